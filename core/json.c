/* json.c -- mc.json: lua-cjson (Debian's 2.1.0) in safe mode, with what it lacks.
 *
 * - Decoding: cjson 2.1.0 turns every number into a float, so "5" would come back
 *   as 5.0 and print as "5.0"; integral values that a double holds exactly
 *   (|n| <= 2^53) are turned back into Lua integers.
 * - Empty arrays: an empty Lua table encodes as {}. json.empty_array is a sentinel
 *   string, random per state, that encode rewrites to []; a remote peer cannot
 *   guess it, and decode refuses it all the same (a fuzzer that watches the
 *   comparisons found it), so decoded input can never smuggle it in.
 * - Precision: cjson prints 14 significant digits; encode refuses an integer of
 *   more digits (it would be rounded) instead of writing a wrong number.
 * - Limits: decoding nests at most 64 deep; NaN, Infinity and hex numbers are
 *   refused on input as on output, and so is a number a double cannot hold
 *   (1e400: cjson's strtod made it inf).
 * - Duplicate keys: cjson keeps the last silently, so {"amount": 1, "amount": 9}
 *   would read as whatever a peer's parser does not. The decoded tables are
 *   walked anyway (integers); the walk counts their entries and a scan of the
 *   text counts the members written: a duplicate key is the only way to lose
 *   one. Both are linear; the scan costs a few percent of a decode.
 * - NUL: cjson stops at one as at the end of the text; a text with one is refused.
 * Failures of either direction return nil, err (safe mode). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "host.h"

#define JSON_MAX_DEPTH 64
#define EXACT_INT_LIMIT 9007199254740992.0 /* 2^53 */

enum { UP_DECODE = 1, UP_ENCODE, UP_TOKEN }; /* upvalues of decode/encode */

/* True (and *out set) when n is integral and a double holds it exactly. */
static int exact_integer(lua_Number n, lua_Integer *out) {
  if (!(n >= -EXACT_INT_LIMIT && n <= EXACT_INT_LIMIT) || floor(n) != n) return 0;
  *out = (lua_Integer)n;
  return 1;
}

static int is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The bytes count_members stops at: outside strings (bit 1), inside (bit 2). */
static const unsigned char stops[256] = {['"'] = 3, [','] = 1, ['['] = 1, ['{'] = 1, ['\\'] = 2};

/* The members (object fields and array elements) of a text cjson accepted:
 * one per comma outside strings, and one more per container not empty. It
 * runs on every body, so it skips the other bytes through a table. */
static size_t count_members(const char *text, size_t len) {
  const unsigned char *s = (const unsigned char *)text, *end = s + len;
  size_t n = 0;
  for (;;) {
    while (s < end && !(stops[*s] & 1)) s++;
    if (s == end) return n;
    unsigned c = *s++;
    if (c == '"') {
      for (;;) { /* to the closing quote; an escape takes two bytes */
        while (s < end && !(stops[*s] & 2)) s++;
        if (s == end || *s == '"') break;
        s += end - s >= 2 ? 2 : 1;
      }
      if (s < end) s++;
    } else if (c == ',') {
      n++;
    } else {
      while (s < end && is_json_space((char)*s)) s++;
      if (s < end && *s != ']' && *s != '}') n++;
    }
  }
}

/* Walks what cjson decoded, recursively (the decoder bounds the depth): turns
 * integral floats into integers in place, counts the entries (*n), and answers
 * NULL or why the value is refused (a key or a value equal to the string at
 * index token, json.empty_array, among the reasons). */
static const char *check_decoded(lua_State *L, int idx, size_t *n, int token) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 3, "json: nesting too deep");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    (*n)++;
    const char *bad = NULL;
    if (lua_rawequal(L, -1, token) || lua_rawequal(L, -2, token)) {
      bad = "the empty-array token";
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      bad = check_decoded(L, -1, n, token);
    } else if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Integer i;
      if (!isfinite(lua_tonumber(L, -1))) {
        bad = "number out of range";
      } else if (exact_integer(lua_tonumber(L, -1), &i)) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, i);
        lua_rawset(L, idx); /* assigning an existing field is allowed during next */
      }
    }
    if (bad != NULL) {
      lua_pop(L, 2);
      return bad;
    }
    lua_pop(L, 1);
  }
  return NULL;
}

static int refuse(lua_State *L, const char *why) {
  luaL_pushfail(L);
  lua_pushstring(L, why);
  return 2;
}

#define DECODE_UP_TOKEN 2 /* json.empty_array, refused on input */

/* json.decode(s) -> value | nil, err */
static int json_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  /* cjson stops at a NUL as at the end: what follows it would be ignored.
   * JSON has no raw NUL anywhere (in a string it is written \u0000). */
  if (memchr(text, '\0', len) != NULL) return refuse(L, "NUL byte in JSON text");
  lua_pushvalue(L, lua_upvalueindex(UP_DECODE));
  lua_pushvalue(L, 1);
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2)) return 2;
  lua_pop(L, 1);
  if (lua_type(L, -1) == LUA_TTABLE) {
    size_t entries = 0;
    const char *bad = check_decoded(L, -1, &entries, lua_upvalueindex(DECODE_UP_TOKEN));
    if (bad != NULL) return refuse(L, bad);
    if (entries != count_members(text, len)) return refuse(L, "duplicate key in an object");
  } else if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
    lua_Integer i;
    if (!isfinite(lua_tonumber(L, -1))) return refuse(L, "number out of range");
    if (exact_integer(lua_tonumber(L, -1), &i)) lua_pushinteger(L, i);
  } else if (lua_rawequal(L, -1, lua_upvalueindex(DECODE_UP_TOKEN))) {
    return refuse(L, "the empty-array token");
  }
  return 1;
}

/* cjson 2.1.0 prints numbers with 14 significant digits, so a larger integer
 * (an id, a microsecond timestamp) would come out rounded. Finds one, so that
 * encode fails loudly instead: 1, with *bad set. Past cjson's own depth limit
 * the whole walk stops (-1, and cjson reports the nesting): a cycle reached by
 * two paths would otherwise be walked along 2^depth of them. */
#define ENCODE_MAX_DEPTH 1000               /* cjson's default encode_max_depth */
#define EXACT_PRINT_LIMIT 100000000000000LL /* 10^14 */

static int inexact_integer(lua_State *L, int idx, int depth, lua_Integer *bad) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (!lua_isinteger(L, idx)) return 0;
    lua_Integer n = lua_tointeger(L, idx);
    if (n > -EXACT_PRINT_LIMIT && n < EXACT_PRINT_LIMIT) return 0;
    *bad = n;
    return 1;
  }
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (depth > ENCODE_MAX_DEPTH) return -1;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 3, "json: nesting too deep");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int found = inexact_integer(L, -1, depth + 1, bad);
    if (found != 0) {
      lua_pop(L, 2);
      return found;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* Pushes out with every "token" (quoted) that is a whole JSON string turned into
 * []. A match whose opening quote follows an odd run of backslashes is an
 * escaped quote inside another string (the string "\"<token>" encodes so):
 * it stays as it is. (Found by fuzz/targets/json.lua.) */
static void replace_token(lua_State *L, const char *out, const char *quoted) {
  size_t qlen = strlen(quoted);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *from = out, *hit;
  while ((hit = strstr(from, quoted)) != NULL) {
    size_t slashes = 0;
    while (hit - slashes > out && hit[-(ptrdiff_t)slashes - 1] == '\\') slashes++;
    luaL_addlstring(&b, from, (size_t)(hit - from));
    if (slashes % 2 == 0) {
      luaL_addstring(&b, "[]");
      from = hit + qlen;
    } else {
      luaL_addchar(&b, '"');
      from = hit + 1;
    }
  }
  luaL_addstring(&b, from);
  luaL_pushresult(&b);
}

/* json.encode(value) -> string | nil, err */
static int json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  lua_Integer bad;
  if (inexact_integer(L, 1, 0, &bad) == 1) {
    luaL_pushfail(L);
    lua_pushfstring(
      L, "cannot encode integer %I exactly (more than 14 digits): pass it as a string", bad);
    return 2;
  }
  lua_pushvalue(L, lua_upvalueindex(UP_ENCODE));
  lua_pushvalue(L, 1);
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2)) return 2;
  lua_pop(L, 1);
  const char *out = lua_tostring(L, -1);
  const char *quoted = lua_tostring(L, lua_upvalueindex(UP_TOKEN));
  if (strstr(out, quoted) != NULL) replace_token(L, out, quoted);
  return 1;
}

/* json.array(t) -> t, or json.empty_array when t is empty */
static int json_array(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushnil(L);
  if (lua_next(L, 1) != 0) {
    lua_settop(L, 1);
    return 1;
  }
  lua_getfield(L, lua_upvalueindex(1), "empty_array");
  return 1;
}

/* Pushes a fresh cjson.safe instance configured for untrusted input. */
static void push_cjson(lua_State *L) {
  luaL_requiref(L, "cjson.safe", luaopen_cjson_safe, 0);
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1);
  lua_remove(L, -2);
  lua_getfield(L, -1, "decode_max_depth");
  lua_pushinteger(L, JSON_MAX_DEPTH);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "decode_invalid_numbers");
  lua_pushboolean(L, 0);
  lua_call(L, 1, 0);
}

static void push_token(lua_State *L) {
  unsigned char raw[16];
  char hex[2 * sizeof raw + 1];
  if (getentropy(raw, sizeof raw) != 0) luaL_error(L, "json: no entropy for the empty-array token");
  for (size_t i = 0; i < sizeof raw; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  lua_pushfstring(L, "mc.json.empty_array:%s", hex);
}

int luaopen_mc_json(lua_State *L) {
  lua_newtable(L); /* M */
  push_cjson(L);   /* M cjson */
  push_token(L);   /* M cjson token */
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "empty_array");
  lua_pushfstring(L, "\"%s\"", lua_tostring(L, -1)); /* as it appears encoded */
  lua_remove(L, -2);                                 /* M cjson "token" */

  lua_getfield(L, -2, "decode");
  lua_getfield(L, -4, "empty_array");
  lua_pushcclosure(L, json_decode, 2);
  lua_setfield(L, -4, "decode");

  lua_getfield(L, -2, "decode"); /* placeholder for UP_DECODE */
  lua_getfield(L, -3, "encode");
  lua_pushvalue(L, -3);
  lua_pushcclosure(L, json_encode, 3);
  lua_setfield(L, -4, "encode");
  lua_pop(L, 1); /* M cjson */

  lua_pushvalue(L, -2);
  lua_pushcclosure(L, json_array, 1);
  lua_setfield(L, -3, "array");
  mc_pushnull(L); /* cjson's own null, named once for the whole host (host.h) */
  lua_setfield(L, -3, "null");
  lua_pop(L, 1);
  return 1;
}
