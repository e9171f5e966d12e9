/* http.c -- mc.http_native: one blocking HTTP request through libcurl's easy
 * interface. The Lua half (core/lua/mc/http.lua) builds requests (query strings,
 * JSON and form bodies) and wraps responses; this file moves the bytes.
 *
 * Each Lua state keeps one easy handle, owned by a userdata in the registry, and
 * reuses it: curl_easy_reset clears the options between requests but keeps the
 * handle's connection cache, so consecutive requests to one host share a
 * keep-alive connection. Per request, the header list and the response body are
 * owned by a second userdata, so a Lua error at any point frees them.
 *
 * Inside a job's coroutine (core/sched.c) a request runs on an easy handle of
 * its own added to the state's multi handle, which shares one connection cache
 * among all of them, and the coroutine yields until the transfer is done; the
 * scheduler's wait (mc_http_wait) drives every transfer of the state at once.
 *
 * Defaults are the safe ones: TLS peer and host verified, redirects not
 * followed, http and https only, a 16 MiB cap on the body, 30 s for the whole
 * request and 10 s to connect.
 *
 * native.smtp sends one mail through libcurl's SMTP (smtp:// with STARTTLS
 * required by default, or smtps://); mc.mail builds the message. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <curl/curl.h>

#include "host.h"
#include "options.h"

#define CLIENT_MT "mc.http.client"
#define REQUEST_MT "mc.http.request"
#define CSTR_MT "mc.http.cstr"
#define SMTP_MT "mc.http.smtp"
#define MULTI_MT "mc.http.multi"
#define CLIENT_KEY "mc.http.easy"        /* registry field: this state's client (not CLIENT_MT!) */
#define MULTI_KEY "mc.http.multi_handle" /* registry field: this state's multi handle */

#define DEFAULT_TIMEOUT 30.0 /* seconds, the whole request */
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_MAX_BODY (16 * 1024 * 1024)
#define MAX_TIMEOUT 86400.0
#define MAX_REDIRECTS 20
#define BODY_CHUNK 16384

/* ---- owners ------------------------------------------------------------- */

typedef struct http_client {
  CURL *easy; /* reused by every request of this state: it holds the connections */
} http_client;

typedef struct http_multi {
  CURLM *m; /* NULL once closed */
} http_multi;

typedef struct http_request {
  CURL *easy;        /* a transfer's own handle in the multi; NULL when blocking */
  http_multi *multi; /* the multi the easy handle was added to, or NULL */
  int done;          /* the multi says the transfer ended, with rc */
  CURLcode rc;
  struct curl_slist *headers;
  char *body; /* the response body, malloc'd; grows up to max */
  size_t len, cap, max;
  int too_large, oom; /* why the write callback refused data */
  char errbuf[CURL_ERROR_SIZE];
} http_request;

typedef struct http_cstr {
  char *s; /* a string allocated by libcurl (curl_free) */
} http_cstr;

static void client_close(http_client *c) {
  if (c->easy != NULL) curl_easy_cleanup(c->easy);
  c->easy = NULL;
}

static void request_close(http_request *r) {
  if (r->easy != NULL) {
    if (r->multi != NULL && r->multi->m != NULL) curl_multi_remove_handle(r->multi->m, r->easy);
    curl_easy_cleanup(r->easy);
  }
  r->easy = NULL;
  r->multi = NULL;
  curl_slist_free_all(r->headers);
  free(r->body);
  r->headers = NULL;
  r->body = NULL;
  r->len = r->cap = 0;
}

static void cstr_close(http_cstr *c) {
  curl_free(c->s);
  c->s = NULL;
}

static int multi_gc(lua_State *L) {
  http_multi *m = luaL_checkudata(L, 1, MULTI_MT);
  if (m->m != NULL) curl_multi_cleanup(m->m); /* transfers still added are detached */
  m->m = NULL;
  return 0;
}

static int multi_tostring(lua_State *L) {
  http_multi *m = luaL_checkudata(L, 1, MULTI_MT);
  lua_pushfstring(L, "mc.http.multi (%s)", m->m ? "open" : "closed");
  return 1;
}

static int client_gc(lua_State *L) {
  client_close(luaL_checkudata(L, 1, CLIENT_MT));
  return 0;
}

static int request_gc(lua_State *L) {
  request_close(luaL_checkudata(L, 1, REQUEST_MT));
  return 0;
}

static int cstr_gc(lua_State *L) {
  cstr_close(luaL_checkudata(L, 1, CSTR_MT));
  return 0;
}

static int client_tostring(lua_State *L) {
  http_client *c = luaL_checkudata(L, 1, CLIENT_MT);
  if (c->easy == NULL) lua_pushliteral(L, "mc.http.client (closed)");
  else lua_pushfstring(L, "mc.http.client (%p)", (void *)c);
  return 1;
}

static int request_tostring(lua_State *L) {
  http_request *r = luaL_checkudata(L, 1, REQUEST_MT);
  lua_pushfstring(L, "mc.http.request (%p, %I body bytes)", (void *)r, (lua_Integer)r->len);
  return 1;
}

static int cstr_tostring(lua_State *L) {
  http_cstr *c = luaL_checkudata(L, 1, CSTR_MT);
  lua_pushfstring(L, "mc.http.cstr (%s)", c->s ? "held" : "freed");
  return 1;
}

static void *new_owner(lua_State *L, size_t size, const char *mt) {
  void *p = lua_newuserdatauv(L, size, 0);
  memset(p, 0, size);
  luaL_setmetatable(L, mt);
  return p;
}

/* This state's easy handle, made on first use and kept in the registry. */
static CURL *easy_of(lua_State *L) {
  http_client *c;
  if (lua_getfield(L, LUA_REGISTRYINDEX, CLIENT_KEY) == LUA_TUSERDATA) {
    c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (c->easy != NULL) return c->easy;
  } else {
    lua_pop(L, 1);
    c = new_owner(L, sizeof *c, CLIENT_MT);
    lua_setfield(L, LUA_REGISTRYINDEX, CLIENT_KEY);
  }
  if ((c->easy = curl_easy_init()) == NULL) luaL_error(L, "http: out of memory");
  return c->easy;
}

/* This state's multi handle, made on first use and kept in the registry. */
static http_multi *multi_of(lua_State *L) {
  http_multi *m;
  if (lua_getfield(L, LUA_REGISTRYINDEX, MULTI_KEY) == LUA_TUSERDATA) {
    m = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (m->m != NULL) return m;
  } else {
    lua_pop(L, 1);
    m = new_owner(L, sizeof *m, MULTI_MT);
    lua_setfield(L, LUA_REGISTRYINDEX, MULTI_KEY);
  }
  if ((m->m = curl_multi_init()) == NULL) luaL_error(L, "http: out of memory");
  return m;
}

/* ---- options ------------------------------------------------------------ */

/* opts[key] in seconds, as milliseconds for curl (at least 1: 0 would mean none). */
static long opt_millis(const mc_options *o, const char *key, double def) {
  long ms = (long)(mc_opt_seconds(o, key, def, MAX_TIMEOUT) * 1000);
  return ms > 0 ? ms : 1;
}

static int valid_token(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if (*s <= ' ' || *s >= 127 || strchr("()<>@,;:\\\"/[]?={}", *s) != NULL) return 0;
  return 1;
}

static void append_line(lua_State *L, http_request *r, const char *line) {
  struct curl_slist *l = curl_slist_append(r->headers, line);
  if (l == NULL) luaL_error(L, "http: out of memory");
  r->headers = l;
}

/* Appends "name: value" to r->headers; raises on a header that could smuggle
 * another one (CR, LF, NUL) or on out of memory. The list is r's, so a raise
 * leaks nothing. */
static void add_header(lua_State *L, http_request *r, const char *name, const char *value,
                       size_t vlen) {
  if (!valid_token(name)) luaL_error(L, "http: invalid header name \"%s\"", name);
  if (strlen(value) != vlen || strpbrk(value, "\r\n") != NULL)
    luaL_error(L, "http: header %s: value must not contain CR, LF or NUL", name);
  /* curl sends "Name;" as an empty header, where "Name:" would remove it */
  append_line(L, r,
              *value ? lua_pushfstring(L, "%s: %s", name, value) : lua_pushfstring(L, "%s;", name));
  lua_pop(L, 1);
}

/* opts.headers ({name = string | number}) into r->headers. Returns whether a
 * Content-Type was given. */
static int set_headers(lua_State *L, http_request *r) {
  int has_type = 0, t = lua_getfield(L, 1, "headers");
  if (t != LUA_TNIL && t != LUA_TTABLE) luaL_error(L, "http: headers must be a table");
  for (lua_pushnil(L); t == LUA_TTABLE && lua_next(L, -2) != 0; lua_pop(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "http: header names must be strings");
    const char *name = lua_tostring(L, -2);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "http: header %s: value must be a string", name);
    size_t vlen;
    const char *value =
      lua_tolstring(L, -1, &vlen); /* a number converts in place: fine for a value */
    add_header(L, r, name, value, vlen);
    if (strcasecmp(name, "content-type") == 0) has_type = 1;
  }
  lua_pop(L, 1);
  append_line(L, r, "Expect:"); /* "Name:" removes curl's own: no 100-continue round trip */
  return has_type;
}

static int valid_method(const char *m) {
  size_t n = strlen(m);
  if (n == 0 || n > 16) return 0;
  for (; *m; m++)
    if (*m < 'A' || *m > 'Z') return 0;
  return 1;
}

/* Method and body. POSTFIELDS points into the Lua string, anchored by opts. */
static void set_method(lua_State *L, CURL *e, const char *method, const char *body, size_t blen) {
  if (!valid_method(method)) luaL_error(L, "http: invalid method \"%s\"", method);
  if (strcmp(method, "HEAD") == 0) {
    if (body != NULL) luaL_error(L, "http: a HEAD request has no body");
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    return;
  }
  if (strcmp(method, "GET") == 0 && body == NULL) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    return;
  }
  if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  if (body != NULL || strcmp(method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body != NULL ? body : "");
  }
}

/* Appends to r->body, or refuses (0: curl stops with CURLE_WRITE_ERROR) past
 * r->max or when memory runs out. */
static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  http_request *r = ud;
  size_t len = size * n;
  if (len > r->max - r->len) {
    r->too_large = 1;
    return 0;
  }
  if (r->len + len > r->cap) {
    size_t cap = r->cap ? r->cap : BODY_CHUNK;
    while (cap < r->len + len) cap *= 2;
    if (cap > r->max) cap = r->max;
    char *p = realloc(r->body, cap);
    if (p == NULL) {
      r->oom = 1;
      return 0;
    }
    r->body = p;
    r->cap = cap;
  }
  memcpy(r->body + r->len, data, len);
  r->len += len;
  return len;
}

/* Every option of one request; raises on misuse (nothing leaks: r owns it all). */
static void set_options(lua_State *L, CURL *e, http_request *r) {
  mc_options o = {L, 1, "http"};
  size_t blen = 0;
  const char *url = mc_opt_string(&o, "url", NULL, NULL);
  if (url == NULL || *url == '\0') luaL_error(L, "http: url is required");
  const char *body = mc_opt_string(&o, "body", NULL, &blen);
  const char *method = mc_opt_string(&o, "method", "GET", NULL);
  set_method(L, e, method, body, blen);
  /* curl would label any body a form; a raw body goes out with no type unless given one */
  if (!set_headers(L, r) && body != NULL) append_line(L, r, "Content-Type:");
  r->max = (size_t)mc_opt_integer(&o, "max_body", DEFAULT_MAX_BODY, 1, (lua_Integer)1 << 40);
  lua_Integer follow = mc_opt_integer(&o, "follow", 0, 0, MAX_REDIRECTS);
  int insecure = mc_opt_boolean(&o, "insecure", 0);

  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "multiconnect/" MC_VERSION);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, opt_millis(&o, "timeout", DEFAULT_TIMEOUT));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   opt_millis(&o, "connect_timeout", DEFAULT_CONNECT_TIMEOUT));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, follow > 0 ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)follow);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, insecure ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, insecure ? 0L : 2L);
  if (strcmp(method, "HEAD") != 0) /* refuse early, by Content-Length */
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  if (curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
      curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK)
    luaL_error(L, "http: libcurl cannot restrict protocols (needs 7.85 or later)");
}

/* ---- results ------------------------------------------------------------ */

static int is_tls_error(CURLcode rc) {
  switch (rc) {
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CLIENTCERT:
  case CURLE_USE_SSL_FAILED: return 1;
  default: return 0;
  }
}

/* The short, stable token for a failed transfer, or NULL for "use curl's text". */
static const char *failure_token(CURL *e, CURLcode rc, int too_large, int oom) {
  long os_errno = 0;
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT: return "timeout";
  case CURLE_COULDNT_RESOLVE_HOST: return "could not resolve host";
  case CURLE_COULDNT_RESOLVE_PROXY: return "could not resolve proxy";
  case CURLE_COULDNT_CONNECT:
    curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
    return os_errno == ECONNREFUSED ? "connection refused" : "could not connect";
  case CURLE_FILESIZE_EXCEEDED: return "too large";
  case CURLE_WRITE_ERROR: return too_large ? "too large" : oom ? "out of memory" : "write error";
  case CURLE_TOO_MANY_REDIRECTS: return "too many redirects";
  case CURLE_UNSUPPORTED_PROTOCOL: return "unsupported protocol";
  case CURLE_URL_MALFORMAT: return "malformed url";
  case CURLE_GOT_NOTHING: return "empty reply";
  case CURLE_SEND_ERROR: return "send failed";
  case CURLE_RECV_ERROR: return "receive failed";
  case CURLE_PARTIAL_FILE: return "incomplete body";
  case CURLE_WEIRD_SERVER_REPLY: return "bad response";
  default: return NULL;
  }
}

static int push_failure(lua_State *L, CURL *e, const http_request *r, CURLcode rc) {
  luaL_pushfail(L);
  const char *token = failure_token(e, rc, r->too_large, r->oom);
  if (token != NULL) lua_pushstring(L, token);
  else if (is_tls_error(rc))
    lua_pushfstring(L, "tls: %s", *r->errbuf ? r->errbuf : curl_easy_strerror(rc));
  else lua_pushstring(L, *r->errbuf ? r->errbuf : curl_easy_strerror(rc));
  return 2;
}

/* Pushes the lower-cased form of s. */
static void push_lower(lua_State *L, const char *s) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (; *s; s++) luaL_addchar(&b, (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s));
  luaL_pushresult(&b);
}

/* The final response's headers as {name = value}: names lower-cased, repeated
 * headers joined with ", " (RFC 9110), except set-cookie, whose values may hold
 * commas: it is always an array of strings. */
static void push_headers(lua_State *L, CURL *e) {
  struct curl_header *h = NULL;
  lua_newtable(L);
  while ((h = curl_easy_nextheader(e, CURLH_HEADER, -1, h)) != NULL) {
    push_lower(L, h->name);
    lua_pushvalue(L, -1);
    int t = lua_rawget(L, -3);
    if (strcmp(lua_tostring(L, -2), "set-cookie") == 0) {
      if (t == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
      }
      lua_pushstring(L, h->value);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    } else if (t == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushstring(L, h->value);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushstring(L, h->value);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
}

/* native.request(opts) -> status, headers, body | nil, err
 *   opts: url, method ("GET"), headers ({name = value}), body (string),
 *   timeout, connect_timeout (seconds), follow (max redirects, 0), max_body
 *   (bytes), insecure (skip TLS verification). */
/* curl takes the URL as a C string: one with a NUL in it would be cut there, and
 * another URL than the one asked for requested. */
static int url_has_nul(lua_State *L) {
  size_t len;
  lua_getfield(L, 1, "url");
  const char *url = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  int bad = url != NULL && memchr(url, '\0', len) != NULL;
  lua_pop(L, 1);
  return bad;
}

static int push_response(lua_State *L, CURL *e, http_request *r, CURLcode rc);

/* The continuation of a transfer in a coroutine: r (index 2) done, or wait on. */
static int request_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  http_request *r = luaL_checkudata(L, 2, REQUEST_MT);
  if (!r->done) return mc_sched_wait(L, r, -1, 0, 0, ctx, request_k);
  lua_settop(L, 2);
  return push_response(L, r->easy, r, r->rc);
}

/* A request in a job's coroutine: its own easy handle (owned by r, index 2)
 * added to the state's multi; yields until mc_http_wait sees it done. */
static int request_start(lua_State *L) {
  http_multi *m = multi_of(L);
  http_request *r = new_owner(L, sizeof *r, REQUEST_MT); /* index 2 */
  if ((r->easy = curl_easy_init()) == NULL) return luaL_error(L, "http: out of memory");
  set_options(L, r->easy, r);
  curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (void *)r);
  if (curl_multi_add_handle(m->m, r->easy) != CURLM_OK) return luaL_error(L, "http: cannot start");
  r->multi = m;
  int running;
  curl_multi_perform(m->m, &running); /* starts it: the connect, the first bytes */
  return mc_sched_wait(L, r, -1, 0, 0, 0, request_k);
}

static int http_request_fn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (url_has_nul(L)) {
    luaL_pushfail(L);
    lua_pushliteral(L, "malformed url (NUL byte)");
    return 2;
  }
  if (mc_sched_can_yield(L)) return request_start(L);
  CURL *e = easy_of(L);
  http_request *r = new_owner(L, sizeof *r, REQUEST_MT); /* index 2 */
  curl_easy_reset(e);
  set_options(L, e, r);
  return push_response(L, e, r, curl_easy_perform(e));
}

/* The response of a finished transfer, or nil, err; frees r's buffers. */
static int push_response(lua_State *L, CURL *e, http_request *r, CURLcode rc) {
  if (rc != CURLE_OK) {
    push_failure(L, e, r, rc);
    request_close(r);
    return 2;
  }
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  lua_pushinteger(L, status);
  push_headers(L, e);
  lua_pushlstring(L, r->body, r->len);
  request_close(r); /* now, not at the next collection: bodies can be large */
  return 3;
}

static short to_curl_events(short ev) {
  return (short)(((ev & POLLIN) ? CURL_WAIT_POLLIN : 0) | ((ev & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
}

static short from_curl_events(short ev) {
  return (short)(((ev & CURL_WAIT_POLLIN) ? POLLIN : 0) | ((ev & CURL_WAIT_POLLOUT) ? POLLOUT : 0) |
                 ((ev & CURL_WAIT_POLLPRI) ? POLLPRI : 0));
}

/* Marks each transfer the multi reports finished and pushes its key (r). */
static void collect_done(lua_State *L, CURLM *m, int done_idx) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    http_request *r = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (r == NULL) continue;
    r->done = 1;
    r->rc = msg->data.result;
    lua_pushlightuserdata(L, r);
    lua_rawseti(L, done_idx, (lua_Integer)lua_rawlen(L, done_idx) + 1);
  }
}

int mc_http_wait(lua_State *L, struct pollfd *fds, int n, int timeout_ms, int done_idx) {
  http_multi *m = NULL;
  if (lua_getfield(L, LUA_REGISTRYINDEX, MULTI_KEY) == LUA_TUSERDATA) m = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (m == NULL || m->m == NULL) return poll(fds, (nfds_t)n, timeout_ms);
  struct curl_waitfd *w = lua_newuserdatauv(L, sizeof *w * (size_t)(n > 0 ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    w[i].fd = fds[i].fd;
    w[i].events = to_curl_events(fds[i].events);
    w[i].revents = 0;
  }
  int numfds = 0, running = 0, ready = 0;
  /* a transfer can end in request_start's first perform (a malformed URL, a
   * protocol not allowed): nothing more will happen on a socket, so do not wait */
  collect_done(L, m->m, done_idx);
  if (lua_rawlen(L, done_idx) > 0) timeout_ms = 0;
  CURLMcode mc = curl_multi_poll(m->m, n > 0 ? w : NULL, (unsigned)n, timeout_ms, &numfds);
  curl_multi_perform(m->m, &running);
  collect_done(L, m->m, done_idx);
  for (int i = 0; i < n; i++)
    if ((fds[i].revents = from_curl_events(w[i].revents)) != 0) ready++;
  /* curl passes on POLLIN, POLLOUT and POLLPRI only: a socket in error, hung up
   * or closed (POLLERR, POLLHUP, POLLNVAL) would look idle, and its coroutine
   * would spin on it until its deadline. When poll counted more than curl
   * reported (curl's own sockets count too), ask poll itself. */
  if (mc == CURLM_OK && numfds > ready && ready < n) {
    int rc = poll(fds, (nfds_t)n, 0);
    if (rc >= 0) ready = rc;
  }
  lua_pop(L, 1);
  if (mc != CURLM_OK) {
    errno = EIO;
    return -1;
  }
  return ready;
}

/* native.escape(s) -> s percent-encoded (all but A-Z a-z 0-9 - . _ ~). */
static int http_escape(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (len > INT_MAX) return luaL_argerror(L, 1, "string too long");
  http_cstr *c = new_owner(L, sizeof *c, CSTR_MT);
  if ((c->s = curl_easy_escape(easy_of(L), s, (int)len)) == NULL)
    return luaL_error(L, "http: out of memory");
  lua_pushstring(L, c->s);
  cstr_close(c);
  return 1;
}

/* ---- SMTP --------------------------------------------------------------- */

/* One message's send. The easy handle is its own, not the state's HTTP one:
 * mail is rare, and a fresh handle leaves no SMTP session half used between
 * sends. The payload points into the Lua string that opts (index 1) anchors. */
typedef struct smtp_send {
  CURL *easy;
  struct curl_slist *rcpt;
  const char *payload;
  size_t len, pos;
  char errbuf[CURL_ERROR_SIZE];
} smtp_send;

static void smtp_close(smtp_send *s) {
  if (s->easy != NULL) curl_easy_cleanup(s->easy);
  curl_slist_free_all(s->rcpt);
  s->easy = NULL;
  s->rcpt = NULL;
}

static int smtp_gc(lua_State *L) {
  smtp_close(luaL_checkudata(L, 1, SMTP_MT));
  return 0;
}

static int smtp_tostring(lua_State *L) {
  smtp_send *s = luaL_checkudata(L, 1, SMTP_MT);
  lua_pushfstring(L, "mc.http.smtp (%p, %s)", (void *)s, s->easy ? "open" : "closed");
  return 1;
}

/* Feeds the payload to curl, which dot-stuffs it and ends it with CRLF.CRLF. */
static size_t on_read(char *buf, size_t size, size_t n, void *ud) {
  smtp_send *s = ud;
  size_t len = size * n;
  if (len > s->len - s->pos) len = s->len - s->pos;
  memcpy(buf, s->payload + s->pos, len);
  s->pos += len;
  return len;
}

/* An envelope address: curl writes it as "<addr>" on a command line, so a CR,
 * LF, NUL, space or angle bracket could smuggle in another SMTP command. */
static int valid_mailbox(const char *a, size_t len) {
  if (len == 0 || len > 320 || strlen(a) != len) return 0;
  for (; *a; a++)
    if ((unsigned char)*a <= ' ' || *a == 127 || *a == '<' || *a == '>') return 0;
  return 1;
}

/* opts.to (an array of addresses) into s->rcpt, which s owns: a raise leaks nothing. */
static void smtp_recipients(lua_State *L, smtp_send *s) {
  if (lua_getfield(L, 1, "to") != LUA_TTABLE)
    luaL_error(L, "smtp: to must be an array of addresses");
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  if (n < 1 || n > 1000) luaL_error(L, "smtp: to must hold 1 to 1000 addresses");
  for (lua_Integer i = 1; i <= n; i++) {
    size_t len;
    if (lua_rawgeti(L, -1, i) != LUA_TSTRING) luaL_error(L, "smtp: to[%I] must be a string", i);
    const char *a = lua_tolstring(L, -1, &len);
    if (!valid_mailbox(a, len)) luaL_error(L, "smtp: to[%I] is not a valid address", i);
    struct curl_slist *l = curl_slist_append(s->rcpt, a); /* copies a */
    if (l == NULL) luaL_error(L, "smtp: out of memory");
    s->rcpt = l;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static long smtp_tls(const mc_options *o) {
  const char *tls = mc_opt_string(o, "tls", "required", NULL);
  if (strcmp(tls, "required") == 0) return (long)CURLUSESSL_ALL;
  if (strcmp(tls, "try") == 0) return (long)CURLUSESSL_TRY;
  if (strcmp(tls, "none") == 0) return (long)CURLUSESSL_NONE;
  return luaL_error(o->L, "smtp: tls must be \"required\", \"try\" or \"none\"");
}

/* Every option of one send; raises on misuse (s owns all that was allocated). */
static void smtp_options(lua_State *L, smtp_send *s) {
  mc_options o = {L, 1, "smtp"};
  size_t flen = 0;
  const char *url = mc_opt_string(&o, "url", NULL, NULL);
  if (url == NULL || *url == '\0') luaL_error(L, "smtp: url is required");
  const char *from = mc_opt_string(&o, "from", NULL, &flen);
  if (from == NULL || !valid_mailbox(from, flen))
    luaL_error(L, "smtp: from must be a valid address");
  s->payload = mc_opt_string(&o, "payload", NULL, &s->len);
  if (s->payload == NULL) luaL_error(L, "smtp: payload is required");
  const char *user = mc_opt_string(&o, "username", NULL, NULL);
  const char *password = mc_opt_string(&o, "password", NULL, NULL);
  long tls = smtp_tls(&o);
  smtp_recipients(L, s);

  CURL *e = s->easy;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
  curl_easy_setopt(e, CURLOPT_MAIL_RCPT, s->rcpt);
  curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
  curl_easy_setopt(e, CURLOPT_READDATA, s);
  curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->len);
  curl_easy_setopt(e, CURLOPT_USE_SSL, tls);
  if (user != NULL) curl_easy_setopt(e, CURLOPT_USERNAME, user);
  if (password != NULL) curl_easy_setopt(e, CURLOPT_PASSWORD, password);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, opt_millis(&o, "timeout", DEFAULT_TIMEOUT));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   opt_millis(&o, "connect_timeout", DEFAULT_CONNECT_TIMEOUT));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
  if (curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps") != CURLE_OK)
    luaL_error(L, "smtp: libcurl cannot restrict protocols (needs 7.85 or later)");
}

/* nil, err[, code]: code is the server's refusal (4xx or 5xx), present only
 * when the server refused, so the caller can tell a temporary refusal from a
 * final one. err is curl's short account ("refused: RCPT failed: 550"), never
 * the server's free text, and never a credential. */
static int push_smtp_failure(lua_State *L, smtp_send *s, CURLcode rc) {
  long code = 0;
  curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
  luaL_pushfail(L);
  const char *token = failure_token(s->easy, rc, 0, 0);
  if (rc == CURLE_LOGIN_DENIED) lua_pushliteral(L, "login denied");
  else if (rc == CURLE_USE_SSL_FAILED) lua_pushliteral(L, "tls: server offers no STARTTLS");
  else if (code >= 400 && code <= 599 && *s->errbuf) lua_pushfstring(L, "refused: %s", s->errbuf);
  else if (code >= 400 && code <= 599) lua_pushfstring(L, "refused: reply %d", (int)code);
  else if (token != NULL) lua_pushstring(L, token);
  else if (is_tls_error(rc))
    lua_pushfstring(L, "tls: %s", *s->errbuf ? s->errbuf : curl_easy_strerror(rc));
  else lua_pushstring(L, *s->errbuf ? s->errbuf : curl_easy_strerror(rc));
  if (code < 400 || code > 599) return 2;
  lua_pushinteger(L, code);
  return 3;
}

/* native.smtp(opts) -> true | nil, err[, code]
 *   opts: url (smtp:// or smtps://, no credentials), from, to ({addr, ...}),
 *   payload (the whole RFC 5322 message, CRLF lines), username, password,
 *   timeout, connect_timeout (seconds), tls ("required" | "try" | "none":
 *   STARTTLS on smtp://; smtps:// is TLS from the start). */
static int http_smtp(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  smtp_send *s = new_owner(L, sizeof *s, SMTP_MT); /* index 2 */
  if ((s->easy = curl_easy_init()) == NULL) return luaL_error(L, "smtp: out of memory");
  smtp_options(L, s);
  CURLcode rc = curl_easy_perform(s->easy);
  int n = 1;
  if (rc == CURLE_OK) lua_pushboolean(L, 1);
  else n = push_smtp_failure(L, s, rc);
  smtp_close(s);
  return n;
}

static void new_metatable(lua_State *L, const char *name, lua_CFunction gc,
                          lua_CFunction tostring) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

int luaopen_mc_http_native(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"request", http_request_fn},
    {"escape", http_escape},
    {"smtp", http_smtp},
    {NULL, NULL},
  };
  new_metatable(L, CLIENT_MT, client_gc, client_tostring);
  new_metatable(L, REQUEST_MT, request_gc, request_tostring);
  new_metatable(L, CSTR_MT, cstr_gc, cstr_tostring);
  new_metatable(L, SMTP_MT, smtp_gc, smtp_tostring);
  new_metatable(L, MULTI_MT, multi_gc, multi_tostring);
  luaL_newlib(L, funcs);
  return 1;
}
