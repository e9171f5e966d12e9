/* url.c -- mc.url: URL parsing through libcurl's URL API (curl_url_*), so that
 * DATABASE_URL, REDIS_URL and the external base URLs are read by a parser that
 * other people maintain, for any scheme. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <curl/curl.h>

#include "host.h"
#include "url.h"

#define URL_MAX_LEN 8192

/* The parse state (or unescape's result in part[0]), owned by a userdata so
 * that a raise while pushing (out of memory) frees the handle and every part
 * string in __gc. */
typedef struct url_parts {
  CURLU *h;
  char *part[8];
} url_parts;

static const struct {
  CURLUPart part;
  unsigned flags;
  const char *key;
} PARTS[8] = {
  {CURLUPART_SCHEME, 0, "scheme"},
  {CURLUPART_USER, CURLU_URLDECODE, "user"},
  {CURLUPART_PASSWORD, CURLU_URLDECODE, "password"},
  {CURLUPART_HOST, 0, "host"},
  {CURLUPART_PORT, 0, "port"},
  {CURLUPART_PATH, 0, "path"},
  {CURLUPART_QUERY, 0, "query"},
  {CURLUPART_FRAGMENT, 0, "fragment"},
};

static int parts_gc(lua_State *L) {
  url_parts *u = lua_touserdata(L, 1);
  for (int i = 0; i < 8; i++) {
    curl_free(u->part[i]);
    u->part[i] = NULL;
  }
  if (u->h != NULL) curl_url_cleanup(u->h);
  u->h = NULL;
  return 0;
}

static url_parts *new_parts(lua_State *L) {
  url_parts *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  if (luaL_newmetatable(L, "mc.url.parts")) {
    lua_pushcfunction(L, parts_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return u;
}

/* mc.url.parse(s) -> {scheme, user, password, host, port, path, query, fragment}
 * | nil, err. user and password are percent-decoded; port is an integer, present
 * only when the URL names one; absent parts are nil. */
static int url_parse(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (len > URL_MAX_LEN) {
    luaL_pushfail(L);
    lua_pushliteral(L, "URL too long");
    return 2;
  }
  url_parts *u = new_parts(L);
  if ((u->h = curl_url()) == NULL) return luaL_error(L, "out of memory");
  CURLUcode rc = curl_url_set(u->h, CURLUPART_URL, s, CURLU_NON_SUPPORT_SCHEME);
  if (rc != CURLUE_OK) {
    luaL_pushfail(L);
    lua_pushstring(L, curl_url_strerror(rc));
    return 2;
  }
  for (int i = 0; i < 8; i++) {
    rc = curl_url_get(u->h, PARTS[i].part, &u->part[i], PARTS[i].flags);
    if (rc == CURLUE_OK) continue;
    u->part[i] = NULL;
    /* absent is nil; a part that is there but does not decode (a password
     * with %00 or %0A) is an error, not a URL without that part */
    if (rc < CURLUE_NO_SCHEME || rc > CURLUE_NO_FRAGMENT) {
      luaL_pushfail(L);
      lua_pushfstring(L, "%s: %s", PARTS[i].key, curl_url_strerror(rc));
      return 2;
    }
  }
  lua_createtable(L, 0, 8);
  for (int i = 0; i < 8; i++) {
    if (u->part[i] == NULL) continue;
    if (PARTS[i].part == CURLUPART_PORT) lua_pushinteger(L, strtol(u->part[i], NULL, 10));
    else lua_pushstring(L, u->part[i]);
    lua_setfield(L, -2, PARTS[i].key);
  }
  return 1; /* the userdata frees the parts when collected */
}

/* Pushes s[0..len) with every %XX decoded by libcurl; the C copy is owned by a
 * userdata until Lua has its own. */
static void push_unescaped(lua_State *L, const char *s, size_t len) {
  if (len > INT_MAX) luaL_error(L, "mc.url: input too long");
  url_parts *u = new_parts(L);
  int n = 0;
  if ((u->part[0] = curl_easy_unescape(NULL, s, (int)len, &n)) == NULL)
    luaL_error(L, "out of memory");
  lua_pushlstring(L, u->part[0], (size_t)n);
  curl_free(u->part[0]); /* Lua has its own copy now */
  u->part[0] = NULL;
  lua_remove(L, -2);
}

/* mc.url.unescape(s) -> s with every %XX decoded ("+" stays "+", as in a URL's
 * user, password or path). */
static int url_unescape(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  push_unescaped(L, s, len);
  return 1;
}

/* Pushes a name or value of a query string or form: "+" is a space, then %XX. */
static void push_form_part(lua_State *L, const char *s, size_t len) {
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, len);
  for (size_t i = 0; i < len; i++) p[i] = s[i] == '+' ? ' ' : s[i];
  luaL_pushresultsize(&b, len);
  push_unescaped(L, lua_tostring(L, -1), len);
  lua_remove(L, -2);
}

void mc_url_add_field(lua_State *L, int t) {
  lua_pushvalue(L, -2);
  switch (lua_rawget(L, t)) { /* name value previous */
  case LUA_TNIL:
    lua_pop(L, 1);
    lua_rawset(L, t);
    break;
  case LUA_TTABLE:
    lua_insert(L, -2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
    break;
  default: /* the first value, a string: both become an array */
    lua_createtable(L, 2, 0);
    lua_insert(L, -3);
    lua_rawseti(L, -3, 1);
    lua_rawseti(L, -2, 2);
    lua_rawset(L, t);
  }
}

/* mc.url.decode_query(s) -> {name = value | {values...}}: a query string or an
 * application/x-www-form-urlencoded body. Pairs split at "&", a name at its
 * first "=" (a name without one has the value ""); empty pairs are skipped. */
static int url_decode_query(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len), *end = s + len;
  lua_settop(L, 1);
  lua_newtable(L);
  while (s < end) {
    const char *amp = memchr(s, '&', (size_t)(end - s));
    if (amp == NULL) amp = end;
    if (amp > s) {
      const char *eq = memchr(s, '=', (size_t)(amp - s));
      const char *value = eq ? eq + 1 : amp;
      push_form_part(L, s, (size_t)((eq ? eq : amp) - s));
      push_form_part(L, value, (size_t)(amp - value));
      mc_url_add_field(L, 2);
    }
    s = amp + 1;
  }
  return 1;
}

int luaopen_mc_url(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"parse", url_parse},
    {"unescape", url_unescape},
    {"decode_query", url_decode_query},
    {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
