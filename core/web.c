/* web.c -- mc.web_native: the HTTP server of `multiconnect web`.
 *
 * As nginx/OpenResty do it: each of WEB_THREADS server threads owns a Lua state
 * (from an mc_pool, pool.c, built ahead by the main thread) and a libmicrohttpd
 * daemon in external-event mode (epoll), all daemons sharing one listening
 * socket. A thread's loop polls its daemon's epoll descriptor together with the
 * sockets its handlers wait on (mc.sched's step). A request is read whole
 * (bounded), then its handler runs in a coroutine of the state's scheduler
 * (core/lua/mc/web.lua), as (ctx, method, path, body, request id); headers,
 * query and peer address are fetched lazily through ctx. A handler that ends
 * without waiting is answered at once; one that waits on the network (mc.redis,
 * mc.pg, mc.http yield in it) has its connection suspended, and the thread
 * serves other requests meanwhile; when the coroutine ends, its answer is built
 * and the connection resumed.
 *
 * The main thread waits for signals: SIGHUP or a change under the folders of opts.watch
 * builds a new set of states, which replaces the old only if every state loads;
 * each thread then takes a new state for new requests and keeps the old one until
 * the requests it started are answered. SIGTERM/SIGINT stop accepting, let
 * in-flight requests finish (up to shutdown_timeout), and return. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <microhttpd.h>

#include "host.h"
#include "options.h"
#include "pool.h"
#include "url.h"
#include "watch.h"
#include "web_guard.h"

typedef struct web_config {
  int port, threads, conn_limit, per_ip_limit, idle_timeout;
  int yield; /* handlers run in scheduler coroutines (0: in the state's main one) */
  size_t body_limit, header_limit;
  double header_timeout, request_timeout, shutdown_timeout;
  const char *const *watch; /* folders whose edits reload the app; NULL: SIGHUP only */
  const char *bind;
  char app[256]; /* the app file, relative to MC_ROOT */
} web_config;

typedef struct server_thread server_thread;

typedef struct web_server {
  web_config cfg;
  const mc_boot *boot;
  mc_pool pool;        /* app states; entry point: start(ctx, method, path, body, id) */
  atomic_int active;   /* requests between first callback and completion */
  atomic_int draining; /* after SIGTERM: answer with Connection: close */
  atomic_int stop;     /* after the drain: the server threads return */
  web_guard guard;     /* header deadlines, room for new clients */
  int listen_fd;       /* shared by every thread's daemon */
  server_thread *threads;
} web_server;

/* One generation's app state on one server thread. */
typedef struct app_state {
  mc_state st;
  int inflight;           /* handlers started here and not finished */
  struct app_state *next; /* older generations still finishing, on the thread */
} app_state;

struct server_thread {
  web_server *srv;
  struct MHD_Daemon *d;
  int epoll_fd; /* the daemon's: readable when it has work */
  pthread_t tid;
  int running;      /* the thread was started (joined at the end) */
  app_state *cur;   /* new requests start here */
  app_state *older; /* replaced by a reload, with handlers still running */
  int resumed;      /* a connection was resumed: MHD_run before any wait */
  size_t logn;      /* access-log lines not yet written */
  char logbuf[16384];
};

typedef struct web_ctx web_ctx;

/* One per request, from the first access callback to the completion callback. */
typedef struct request {
  server_thread *t;
  char *body;
  size_t len, cap;
  int too_large, started, suspended;
  int body_guarded; /* a body was announced: the guard watches it until it is in */
  struct MHD_Connection *conn;
  web_ctx *ctx;              /* while its handler runs */
  struct MHD_Response *resp; /* its answer, built when the handler ended */
  unsigned status;
  size_t resp_len;
  double start;
  char id[80];
} request;

/* The handler's window onto its request (a userdata per request, anchored by
 * the handler's coroutine). */
struct web_ctx {
  request *r;     /* NULL once answered */
  app_state *app; /* NULL once counted out of app->inflight */
};

#define CTX_MT "mc.web.ctx"
static const char STEP_KEY = 0; /* registry key (by address) of a state's step function */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The access-log line is built by hand: printf's formatting of it was about 6% of
 * a request's instructions (callgrind). */
typedef struct log_line {
  char buf[1536];
  size_t n;
} log_line;

static void put(log_line *l, const char *s) {
  size_t k = strlen(s), room = sizeof l->buf - 1 - l->n;
  if (k > room) k = room;
  memcpy(l->buf + l->n, s, k);
  l->n += k;
}

static void put_uint(log_line *l, unsigned long v, int min_digits) {
  char tmp[24];
  int i = sizeof tmp;
  tmp[--i] = '\0';
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0 || (int)sizeof tmp - 1 - i < min_digits);
  put(l, tmp + i);
}

/* libmicrohttpd passes on any method the client sent, control characters and
 * quotes included: only an RFC 9110 token is written bare. */
static int is_token(const char *s) {
  return *s != '\0' && strspn(s, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == strlen(s);
}

/* The thread's access-log lines go out in one write before it next waits (or
 * when its buffer is full): under load one write carries many lines, where a
 * write per line was most of the log's cost. Whole lines only, so the lines of
 * other threads and of stdio never cut into one. */
static void flush_log(server_thread *t) {
  size_t off = 0;
  while (off < t->logn) {
    ssize_t k = write(STDOUT_FILENO, t->logbuf + off, t->logn - off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break; /* nowhere to write: the lines are dropped */
    off += (size_t)k;
  }
  t->logn = 0;
}

/* at=info method=GET path="/x" status=200 bytes=17 duration_ms=0.123 request_id=... */
static void access_log(server_thread *t, const char *method, const char *url, unsigned status,
                       size_t bytes, double seconds, const char *id) {
  log_line l = {.n = 0};
  char path[1024], verb[128];
  unsigned long us = seconds > 0 ? (unsigned long)(seconds * 1e6) : 0;
  put(&l, "at=info method=");
  if (is_token(method)) {
    put(&l, method);
  } else {
    put(&l, "\"");
    put(&l, mc_log_escape(method, verb, sizeof verb));
    put(&l, "\"");
  }
  put(&l, " path=\"");
  put(&l, mc_log_escape(url, path, sizeof path));
  put(&l, "\" status=");
  put_uint(&l, status, 1);
  put(&l, " bytes=");
  put_uint(&l, bytes, 1);
  put(&l, " duration_ms=");
  put_uint(&l, us / 1000, 1);
  put(&l, ".");
  put_uint(&l, us % 1000, 3);
  put(&l, " request_id=");
  put(&l, id);
  l.buf[l.n++] = '\n';
  if (t->logn + l.n > sizeof t->logbuf) flush_log(t);
  memcpy(t->logbuf + t->logn, l.buf, l.n);
  t->logn += l.n;
}

/* ---- request ids ---------------------------------------------------------- */

static _Thread_local uint64_t rng[2]; /* per server thread, seeded on first use */

static uint64_t next_random(uint64_t s[2]) { /* xorshift128+: ids need uniqueness, not secrecy */
  if (s[0] == 0 && s[1] == 0) {
    if (getrandom(s, 2 * sizeof *s, 0) != (ssize_t)(2 * sizeof *s)) s[0] = (uint64_t)time(NULL);
    s[1] |= 1;
  }
  uint64_t x = s[0], y = s[1];
  s[0] = y;
  x ^= x << 23;
  s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
  return s[1] + y;
}

/* X-Request-Id from the router when it is sane (Heroku sends 20-200 chars), else a
 * fresh UUID v4. */
static void request_id(struct MHD_Connection *c, char out[80]) {
  const char *given = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
  if (given != NULL) {
    size_t n = strlen(given);
    if (n >= 1 && n < 80 &&
        strspn(given, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789-_.+/=") == n) {
      memcpy(out, given, n + 1);
      return;
    }
  }
  /* UUID v4 layout: 8-4-4-4-12 hex digits, version nibble 4, variant 10xx */
  static const char hex[] = "0123456789abcdef";
  uint64_t a = next_random(rng), b = next_random(rng);
  a = (a & ~0xf000ULL) | 0x4000ULL;
  b = (b & ~(0xc000ULL << 48)) | (0x8000ULL << 48);
  char *p = out;
  for (int i = 0; i < 32; i++) {
    if (i == 8 || i == 12 || i == 16 || i == 20) *p++ = '-';
    uint64_t w = i < 16 ? a : b;
    *p++ = hex[(w >> (60 - 4 * (i % 16))) & 15];
  }
  *p = '\0';
}

/* ---- app states ---------------------------------------------------------- */

/* mc_state_builder: a state with the app loaded, its start function referenced
 * and its step function in the registry; NULL (the error logged with file and
 * line) if the app fails to load. */
static lua_State *load_app_state(void *ud, int *ref) {
  const web_server *srv = ud;
  lua_State *L = mc_state_new(srv->boot);
  if (L == NULL) return NULL;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mc.web");
  if (mc_pcall(L, 1, 1) != LUA_OK) goto fail;
  lua_getfield(L, -1, "thread_entry");
  lua_pushstring(L, srv->cfg.app);
  lua_pushboolean(L, srv->cfg.yield);
  if (mc_pcall(L, 2, 1) != LUA_OK) goto fail;
  lua_getfield(L, -1, "step");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &STEP_KEY);
  lua_getfield(L, -1, "start");
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_newmetatable(L, CTX_MT);
  lua_settop(L, 0);
  return L;
fail:
  mc_log_error("app failed to load", lua_tostring(L, -1));
  lua_close(L);
  return NULL;
}

/* ---- responses ------------------------------------------------------------ */

/* Builds the request's answer (r->resp); headers from the table at headers_idx of
 * L, else JSON's content type. -1: out of memory. */
static int build_response(request *r, unsigned status, const char *body, size_t len, lua_State *L,
                          int headers_idx) {
  struct MHD_Response *resp =
    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (resp == NULL) return -1;
  if (L != NULL && headers_idx != 0 && lua_istable(L, headers_idx)) {
    lua_pushnil(L);
    while (lua_next(L, headers_idx) != 0) { /* the router made keys and values strings */
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
        MHD_add_response_header(resp, lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else {
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  }
  MHD_add_response_header(resp, "X-Request-Id", r->id);
  r->resp = resp;
  r->status = status;
  r->resp_len = len;
  return 0;
}

static int build_error(request *r, unsigned status, const char *message) {
  char body[256];
  int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"request_id\":\"%s\"}", message, r->id);
  return build_response(r, status, body, (size_t)n, NULL, 0);
}

/* Queues the answer built for the request, and logs it. */
static enum MHD_Result answer(web_server *srv, struct MHD_Connection *c, request *r,
                              const char *method, const char *url) {
  struct MHD_Response *resp = r->resp;
  if (resp == NULL) return MHD_NO; /* it could not be built: close the connection */
  r->resp = NULL;
  if (atomic_load(&srv->draining))
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ret = MHD_queue_response(c, r->status, resp);
  MHD_destroy_response(resp);
  access_log(r->t, method, url, r->status, r->resp_len, now() - r->start, r->id);
  return ret;
}

static enum MHD_Result send_error(web_server *srv, struct MHD_Connection *c, request *r,
                                  unsigned status, const char *message, const char *method,
                                  const char *url) {
  build_error(r, status, message);
  return answer(srv, c, r, method, url);
}

static void log_entry_error(const request *r, const char *msg) {
  char err[4096];
  printf("at=error msg=\"web entry point failed\" request_id=%s error=\"%s\"\n", r->id,
         mc_log_escape(msg ? msg : "?", err, sizeof err));
}

/* Counts a handler out of its state's inflight and parts ctx from its request;
 * -> the request, if it still waits for this answer. */
static request *release_ctx(web_ctx *ctx) {
  if (ctx->app != NULL) ctx->app->inflight--;
  ctx->app = NULL;
  request *r = ctx->r;
  ctx->r = NULL;
  if (r != NULL) r->ctx = NULL;
  return r;
}

/* finish(ctx, ok, status, body, headers): the handler's coroutine ended (ok
 * false: it raised, the error in status). Builds the answer; a suspended
 * connection is resumed, and answer() sends it from the access callback. */
static int web_finish(lua_State *L) {
  web_ctx *ctx = luaL_checkudata(L, 1, CTX_MT);
  request *r = release_ctx(ctx);
  if (r == NULL) return 0; /* the connection went first */
  if (!lua_toboolean(L, 2)) {
    log_entry_error(r, lua_tostring(L, 3));
    build_error(r, 500, "internal server error");
  } else {
    size_t len = 0;
    const char *body = lua_tolstring(L, 4, &len);
    build_response(r, (unsigned)lua_tointeger(L, 3), body ? body : "", len, L, 5);
  }
  if (r->suspended) {
    r->suspended = 0;
    r->t->resumed = 1;
    MHD_resume_connection(r->conn);
  }
  return 0;
}

/* Starts the request's handler in the thread's current state: answered at once
 * when it ran to its end, else its connection waits, suspended, for finish(). */
static enum MHD_Result dispatch(server_thread *t, struct MHD_Connection *c, request *r,
                                const char *method, const char *url) {
  app_state *a = t->cur;
  lua_State *L = a->st.L;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->st.entry_ref);
  web_ctx *ctx = lua_newuserdatauv(L, sizeof *ctx, 0);
  luaL_setmetatable(L, CTX_MT);
  ctx->r = r;
  ctx->app = a;
  r->ctx = ctx;
  r->conn = c;
  r->started = 1;
  a->inflight++;
  lua_pushstring(L, method);
  lua_pushstring(L, url);
  if (r->body != NULL) lua_pushlstring(L, r->body, r->len);
  else lua_pushnil(L);
  lua_pushstring(L, r->id);
  int status = mc_pcall(L, 5, 0);
  free(r->body); /* the handler has its own copy */
  r->body = NULL;
  r->len = r->cap = 0;
  if (status != LUA_OK) {
    log_entry_error(r, lua_tostring(L, -1));
    lua_settop(L, 0);
    if (r->resp == NULL) build_error(r, 500, "internal server error");
    release_ctx(ctx); /* a coroutine left behind answers nothing */
    return answer(t->srv, c, r, method, url);
  }
  if (r->ctx == NULL) return answer(t->srv, c, r, method, url);
  r->suspended = 1;
  MHD_suspend_connection(c);
  return MHD_YES;
}

/* ---- libmicrohttpd callbacks ---------------------------------------------- */

static int append_body(web_server *srv, request *r, const char *data, size_t size) {
  if (r->too_large || r->len + size > srv->cfg.body_limit) {
    r->too_large = 1;
    return 0;
  }
  if (r->len + size > r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 4096;
    while (cap < r->len + size) cap *= 2;
    char *p = realloc(r->body, cap);
    if (p == NULL) return -1;
    r->body = p;
    r->cap = cap;
  }
  memcpy(r->body + r->len, data, size);
  r->len += size;
  return 0;
}

/* ---- the request head's limits ---------------------------------------------
 *
 * libmicrohttpd parses the request line and headers into the connection's
 * memory pool (MHD_OPTION_CONNECTION_MEMORY_LIMIT), each query parameter and
 * header as a record of about 56 bytes. When a record does not fit while it
 * parses the query, 0.9.75 queues its 431 and then overwrites the state that
 * would send it: the client waits for an answer that never comes. So the pool
 * is twice max_header, the head itself is held to max_header here, and a
 * query with more parameters than max_header / 128 never reaches that parser:
 * on_uri, called with the raw URI just before it, drops such a query and
 * marks the request for a 414. The other half of the pool then holds the
 * parameters, the headers' records and the answer's head. */
#define LINE_SLACK 64 /* the method and protocol around the URI on the request line */

static char uri_too_long, too_many_params; /* con_cls marks left by on_uri */

static int is_mark(const void *p) {
  return p == &uri_too_long || p == &too_many_params;
}

static size_t max_params(const web_server *srv) {
  return srv->cfg.header_limit / 128;
}

/* How many records the query would cost: each '&' starts one. */
static size_t count_params(const char *query) {
  size_t n = 1;
  for (const char *p = strchr(query, '&'); p != NULL; p = strchr(p + 1, '&')) n++;
  return n;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
  (void)c;
  web_server *srv = cls;
  const char *query = strchr(uri, '?');
  void *mark = NULL;
  if (strlen(uri) + LINE_SLACK > srv->cfg.header_limit) mark = &uri_too_long;
  else if (query != NULL && count_params(query + 1) > max_params(srv)) mark = &too_many_params;
#if MHD_VERSION <                                                                                  \
  0x01000000 /* the URI is the connection's own buffer, parsed next (0.9.75-0.9.77) */
  if (mark != NULL && query != NULL) ((char *)query)[1] = '\0';
#endif
  return mark;
}

/* The status for a head over its limits (0: none) and its message. */
static unsigned head_refusal(web_server *srv, struct MHD_Connection *c, void *mark,
                             const char **msg) {
  if (mark == &uri_too_long) return *msg = "URI too long", 414;
  if (mark == &too_many_params) return *msg = "too many query parameters", 414;
  const union MHD_ConnectionInfo *info =
    MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
  if (info != NULL && info->header_size > srv->cfg.header_limit)
    return *msg = "request headers too large", 431;
  return 0;
}

static enum MHD_Result begin(server_thread *t, struct MHD_Connection *c, const char *url,
                             const char *method, void **con_cls) {
  web_server *srv = t->srv;
  void *mark = *con_cls;
  request *r = calloc(1, sizeof *r);
  if (r == NULL) return MHD_NO;
  r->t = t;
  *con_cls = r;
  atomic_fetch_add(&srv->active, 1);
  r->start = now();
  request_id(c, r->id);
  web_guard_head_done(&srv->guard, c);
  const char *msg;
  unsigned refused = head_refusal(srv, c, mark, &msg);
  if (refused != 0) {
    r->too_large = 1; /* a body that follows is not read */
    return send_error(srv, c, r, refused, msg, method, url);
  }
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl != NULL && strtoull(cl, NULL, 10) > srv->cfg.body_limit) {
    r->too_large = 1;
    return send_error(srv, c, r, 413, "request body too large", method, url);
  }
  /* a body still to come is guarded as the head was: closed past its deadline, and
   * evictable past WEB_MAX_CONNECTIONS (a trickled body must not hold a place) */
  if ((cl != NULL && strtoull(cl, NULL, 10) > 0) ||
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL) {
    r->body_guarded = 1;
    web_guard_body_wait(&srv->guard, c, srv->cfg.request_timeout);
  }
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  (void)version;
  server_thread *t = cls;
  web_server *srv = t->srv;
  request *r = *con_cls;
  if (r == NULL || is_mark(r)) return begin(t, c, url, method, con_cls);
  if (r->started) return answer(srv, c, r, method, url); /* resumed: the handler ended */
  if (*upload_data_size > 0) {
    if (now() - r->start > srv->cfg.request_timeout) return MHD_NO; /* a trickling body */
    if (append_body(srv, r, upload_data, *upload_data_size) < 0) return MHD_NO;
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (r->body_guarded) web_guard_head_done(&srv->guard, c); /* the body is in */
  if (r->too_large) return send_error(srv, c, r, 413, "request body too large", method, url);
  return dispatch(t, c, r, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)toe;
  server_thread *t = cls;
  web_server *srv = t->srv;
  request *r = *con_cls;
  web_guard_answered(&srv->guard, c);
  *con_cls = NULL;
  if (r == NULL || is_mark(r)) return;     /* libmicrohttpd answered the head itself */
  if (r->ctx != NULL) release_ctx(r->ctx); /* its handler, still running, answers nothing */
  if (r->resp != NULL) MHD_destroy_response(r->resp);
  free(r->body);
  free(r);
  atomic_fetch_sub(&srv->active, 1);
}

/* A client that goes away (or that the guard closed) is no warning: under a
 * slow-client attack these lines alone would flood the log. */
#define CLIENT_GONE "Connection socket is closed when reading request"

/* libmicrohttpd may say the same thing once per connection (a refused accept
 * under a flood): the same message is written at most once a second, and the
 * next line written says how many were held back meanwhile. */
static struct {
  pthread_mutex_t lock;
  char last[96];
  double at;
  long held;
} mhd_log = {PTHREAD_MUTEX_INITIALIZER, "", 0, 0};

static void on_mhd_error(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512], esc[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (strncmp(msg, CLIENT_GONE, sizeof CLIENT_GONE - 1) == 0) return;
  msg[strcspn(msg, "\n")] = '\0';
  double t = now();
  pthread_mutex_lock(&mhd_log.lock);
  if (t - mhd_log.at < 1.0 && strncmp(msg, mhd_log.last, sizeof mhd_log.last - 1) == 0) {
    mhd_log.held++;
    pthread_mutex_unlock(&mhd_log.lock);
    return;
  }
  long held = mhd_log.held;
  mhd_log.held = 0;
  mhd_log.at = t;
  size_t keep = strnlen(msg, sizeof mhd_log.last - 1); /* the start names the message */
  memcpy(mhd_log.last, msg, keep);
  mhd_log.last[keep] = '\0';
  pthread_mutex_unlock(&mhd_log.lock);
  mc_log_escape(msg, esc, sizeof esc);
  if (held > 0) printf("at=warn msg=\"libmicrohttpd: %s\" held_back=%ld\n", esc, held);
  else printf("at=warn msg=\"libmicrohttpd: %s\"\n", esc);
}

/* ---- lazy request fields (called from Lua while the handler runs) ---------- */

static struct MHD_Connection *check_ctx(lua_State *L) {
  web_ctx *ctx = luaL_checkudata(L, 1, CTX_MT);
  if (ctx->r == NULL) luaL_error(L, "the request is over: read what you need while handling it");
  return ctx->r->conn;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
  (void)kind;
  lua_State *L = cls;
  char name[256];
  size_t n = strlen(key);
  if (n >= sizeof name) return MHD_YES; /* no real header name is that long */
  for (size_t i = 0; i <= n; i++)
    name[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
  lua_getfield(L, -1, name);
  if (lua_isstring(L, -1)) { /* repeated: join as RFC 9110 allows */
    lua_pushliteral(L, ", ");
    lua_pushstring(L, value ? value : "");
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushstring(L, value ? value : "");
  }
  lua_setfield(L, -2, name);
  return MHD_YES;
}

/* headers(ctx) -> {lower-cased name = value} */
static int web_headers(lua_State *L) {
  struct MHD_Connection *c = check_ctx(L);
  lua_newtable(L);
  MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, L);
  return 1;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
  (void)kind;
  lua_State *L = cls;
  lua_pushstring(L, key);
  lua_pushstring(L, value ? value : "");
  mc_url_add_field(L, lua_gettop(L) - 2);
  return MHD_YES;
}

/* query(ctx) -> {name = value | {values...}} (decoded by libmicrohttpd) */
static int web_query(lua_State *L) {
  struct MHD_Connection *c = check_ctx(L);
  lua_newtable(L);
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, L);
  return 1;
}

/* ip(ctx) -> the peer's address */
static int web_ip(lua_State *L) {
  struct MHD_Connection *c = check_ctx(L);
  const union MHD_ConnectionInfo *info =
    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char buf[INET6_ADDRSTRLEN] = "";
  if (info != NULL && info->client_addr != NULL) {
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET)
      inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, sizeof buf);
    else if (sa->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, sizeof buf);
  }
  lua_pushstring(L, buf);
  return 1;
}

/* ---- serving -------------------------------------------------------------- */

#define MAX_SECONDS 86400.0

/* The options the caller gives; what they refer to (bind, watch) stays on the
 * stack for as long as serve runs. */
static void read_config(lua_State *L, web_config *cfg, const char *root) {
  luaL_checktype(L, 1, LUA_TTABLE);
  mc_options o = {L, 1, "web"};
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->port = (int)mc_opt_integer(&o, "port", 5000, 1, 65535);
  cfg->threads = (int)mc_opt_integer(&o, "threads", cpus > 0 ? cpus : 1, 1, 1024);
  cfg->conn_limit = (int)mc_opt_integer(&o, "max_connections", 1000, 1, INT_MAX);
  cfg->per_ip_limit = (int)mc_opt_integer(&o, "max_connections_per_ip", 0, 0, INT_MAX);
  cfg->idle_timeout = (int)mc_opt_integer(&o, "idle_timeout", 30, 1, (lua_Integer)MAX_SECONDS);
  cfg->body_limit = (size_t)mc_opt_integer(&o, "max_body", 1 << 20, 1, (lua_Integer)1 << 40);
  cfg->header_limit = (size_t)mc_opt_integer(&o, "max_header", 8 * 1024, 1, INT_MAX);
  cfg->header_timeout = mc_opt_seconds(&o, "header_timeout", 10, MAX_SECONDS);
  cfg->request_timeout = mc_opt_seconds(&o, "request_timeout", 30, MAX_SECONDS);
  cfg->shutdown_timeout = mc_opt_number(&o, "shutdown_timeout", 25, 0, MAX_SECONDS);
  cfg->yield = mc_opt_boolean(&o, "yield", 1);
  cfg->watch = mc_opt_boolean(&o, "reload", 1) ? mc_opt_dirs(&o, "watch", root) : NULL;
  const char *app = mc_opt_string(&o, "app", NULL, NULL);
  if (app == NULL) luaL_error(L, "web: app must be a string");
  if (strlen(app) >= sizeof cfg->app) luaL_error(L, "web: app path too long");
  strcpy(cfg->app, app);
  cfg->bind = mc_opt_string(&o, "bind", "0.0.0.0", NULL); /* the options table keeps it */
}

/* libmicrohttpd's own connection limit is a backstop above the guard's (which
 * closes the oldest waiting connection past cfg->conn_limit): it counts per
 * server thread, and the guard's closes take a moment to land. */
static unsigned hard_conn_limit(const web_config *cfg) {
  long extra = cfg->conn_limit / 4 + 16L * cfg->threads;
  return (unsigned)(cfg->conn_limit + extra > 1000000 ? 1000000 : cfg->conn_limit + extra);
}

/* Each connection is a descriptor: raise the soft limit toward what the
 * connection limit needs (Redis does the same for maxclients), and say so when
 * the hard limit is lower. */
static void reserve_descriptors(const web_config *cfg) {
  struct rlimit rl;
  rlim_t want = (rlim_t)hard_conn_limit(cfg) + 256; /* Postgres, Redis, curl, files */
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) return;
  rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want)
    printf("at=warn msg=\"open files limit below the connection limit\" limit=%lu wanted=%lu\n",
           (unsigned long)rl.rlim_cur, (unsigned long)want);
}

/* The listening socket every thread's daemon accepts from; -1 (errno set). */
static int listen_on(const struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 1024) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* A daemon run by its thread's loop (no thread of its own), on the shared socket. */
static struct MHD_Daemon *start_daemon(server_thread *t) {
  web_server *srv = t->srv;
  const web_config *cfg = &srv->cfg;
  unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG;
  unsigned limit = hard_conn_limit(cfg) / (unsigned)cfg->threads + 1; /* it counts per daemon */
  struct MHD_Daemon *d = MHD_start_daemon(
    flags, 0, NULL, NULL, on_request, t, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error,
    NULL, /* first, so it catches everything */
    MHD_OPTION_LISTEN_SOCKET, srv->listen_fd, MHD_OPTION_CONNECTION_LIMIT, limit,
    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->per_ip_limit, MHD_OPTION_CONNECTION_TIMEOUT,
    (unsigned)cfg->idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
    2 * cfg->header_limit, /* see on_uri */
    MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_NOTIFY_CONNECTION, web_guard_notify,
    &srv->guard, MHD_OPTION_NOTIFY_COMPLETED, on_completed, t, MHD_OPTION_END);
  if (d == NULL) return NULL;
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == NULL) {
    MHD_quiesce_daemon(d); /* the shared socket is not its to close */
    MHD_stop_daemon(d);
    return NULL;
  }
  t->epoll_fd = info->epoll_fd;
  return d;
}

/* ---- a server thread's loop ------------------------------------------------ */

#define TICK_MS 250      /* the longest wait: a reload or the stop is noticed by then */
#define SHARED_TICK_MS 5 /* while an older generation finishes beside the current one */

static unsigned pool_generation(mc_pool *p) {
  pthread_mutex_lock(&p->mu);
  unsigned gen = p->generation;
  pthread_mutex_unlock(&p->mu);
  return gen;
}

/* Gives a state back to the pool (which closes it if a reload replaced it). */
static void retire(web_server *srv, app_state *a) {
  mc_pool_release(&srv->pool, a->st);
  free(a);
}

/* After a reload: new requests go to a state of the new code; the old state
 * stays until the handlers it runs are done (a request ends on the code it
 * started with). */
static void take_new_code(server_thread *t) {
  web_server *srv = t->srv;
  if (pool_generation(&srv->pool) == t->cur->st.generation) return;
  app_state *fresh = calloc(1, sizeof *fresh);
  if (fresh == NULL) return; /* the old code goes on serving; retried next turn */
  fresh->st = mc_pool_acquire(&srv->pool);
  app_state *old = t->cur;
  t->cur = fresh;
  if (old->inflight == 0) {
    retire(srv, old);
  } else {
    old->next = t->older;
    t->older = old;
  }
}

/* step(timeout_ms, wake_fd): the state's scheduler resumes the handlers whose
 * waits are over, waiting up to timeout_ms (wake_fd readable ends it early). */
static void step(app_state *a, int timeout_ms, int wake_fd) {
  lua_State *L = a->st.L;
  lua_settop(L, 0);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STEP_KEY);
  lua_pushinteger(L, timeout_ms);
  if (wake_fd >= 0) lua_pushinteger(L, wake_fd);
  else lua_pushnil(L);
  if (mc_pcall(L, 2, 0) != LUA_OK) {
    mc_log_error("web scheduler failed", lua_tostring(L, -1));
    struct timespec ts = {0, 10 * 1000 * 1000}; /* never a busy loop */
    nanosleep(&ts, NULL);
  }
  lua_settop(L, 0);
}

/* Waits for the daemon or a handler's socket (up to the daemon's own timeout),
 * and runs the handlers that can go on. */
static void wait_for_work(server_thread *t) {
  int timeout = TICK_MS;
  MHD_UNSIGNED_LONG_LONG mto;
  if (MHD_get_timeout(t->d, &mto) == MHD_YES && mto < (MHD_UNSIGNED_LONG_LONG)timeout)
    timeout = (int)mto;
  app_state **pp = &t->older;
  while (*pp != NULL) { /* older generations: a look each turn, no wait */
    app_state *a = *pp;
    step(a, 0, -1);
    if (a->inflight > 0) {
      pp = &a->next;
      continue;
    }
    *pp = a->next;
    retire(t->srv, a);
  }
  if (t->older != NULL && timeout > SHARED_TICK_MS) timeout = SHARED_TICK_MS;
  if (t->cur->inflight > 0) {
    step(t->cur, timeout, t->epoll_fd);
  } else { /* no handler waits here: only the daemon */
    struct pollfd p = {.fd = t->epoll_fd, .events = POLLIN};
    poll(&p, 1, timeout);
  }
}

static void *serve_thread(void *arg) {
  server_thread *t = arg;
  web_server *srv = t->srv;
  while (!atomic_load(&srv->stop)) {
    take_new_code(t);
    flush_log(t);
    if (t->cur->inflight == 0 && t->older == NULL && !t->resumed) {
      MHD_run_wait(t->d, TICK_MS); /* no handler waits: libmicrohttpd's own epoll_wait */
      continue;
    }
    t->resumed = 0; /* a resumed connection is answered by this run, not after a wait */
    MHD_run(t->d);
    flush_log(t);
    wait_for_work(t);
  }
  flush_log(t);
  return NULL;
}

/* Stops the thread's daemon (quiesced first: the listening socket is shared)
 * and gives its states back. */
static void close_thread(web_server *srv, server_thread *t) {
  if (t->d != NULL) {
    MHD_quiesce_daemon(t->d);
    MHD_stop_daemon(t->d);
    t->d = NULL;
  }
  while (t->older != NULL) {
    app_state *a = t->older;
    t->older = a->next;
    retire(srv, a);
  }
  if (t->cur != NULL) retire(srv, t->cur);
  t->cur = NULL;
}

/* Each thread's state and daemon, then the threads; -1 (errno set) when one
 * cannot be made, after undoing the rest. */
static int start_threads(web_server *srv) {
  int n = srv->cfg.threads, err = 0;
  srv->threads = calloc((size_t)n, sizeof *srv->threads);
  if (srv->threads == NULL) return -1;
  for (int i = 0; i < n && err == 0; i++) {
    server_thread *t = &srv->threads[i];
    t->srv = srv;
    t->cur = calloc(1, sizeof *t->cur);
    if (t->cur == NULL) err = ENOMEM;
    else t->cur->st = mc_pool_acquire(&srv->pool);
    if (err == 0 && (t->d = start_daemon(t)) == NULL) err = errno ? errno : EINVAL;
  }
  for (int i = 0; i < n && err == 0; i++) {
    server_thread *t = &srv->threads[i];
    if ((err = pthread_create(&t->tid, NULL, serve_thread, t)) == 0) t->running = 1;
  }
  if (err == 0) return 0;
  atomic_store(&srv->stop, 1);
  for (int i = 0; i < n; i++) {
    if (srv->threads[i].running) pthread_join(srv->threads[i].tid, NULL);
    close_thread(srv, &srv->threads[i]);
  }
  free(srv->threads);
  srv->threads = NULL;
  errno = err;
  return -1;
}

/* Stop accepting (new connections are refused), let in-flight requests finish. */
static void drain(web_server *srv) {
  atomic_store(&srv->draining, 1);
  /* As libmicrohttpd does for its own thread pool: each daemon drops the
   * listening socket from its epoll set, then the socket stops taking clients. */
  for (int i = 0; i < srv->cfg.threads; i++) MHD_quiesce_daemon(srv->threads[i].d);
  shutdown(srv->listen_fd, SHUT_RDWR);
  double deadline = now() + srv->cfg.shutdown_timeout;
  while (atomic_load(&srv->active) > 0 && now() < deadline) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  int left = atomic_load(&srv->active);
  if (left > 0) {
    /* the server threads may be inside handlers that take however long they
     * take: leave without them. */
    printf("at=warn msg=\"shutdown timeout: dropping requests\" count=%d\n", left);
    fflush(stdout);
    _exit(0);
  }
  atomic_store(&srv->stop, 1);
  for (int i = 0; i < srv->cfg.threads; i++) {
    pthread_join(srv->threads[i].tid, NULL);
    close_thread(srv, &srv->threads[i]);
  }
  free(srv->threads);
  srv->threads = NULL;
}

/* The main thread's tick (a quarter second): the header deadlines. */
static void sweep_slow_clients(void *ud, int sig) {
  (void)sig;
  web_server *srv = ud;
  web_guard_sweep(&srv->guard, now());
}

/* serve(opts) -> true | nil, err. Blocks until SIGTERM/SIGINT and the drain. */
static int web_serve(lua_State *L) {
  web_server *srv = lua_newuserdatauv(L, sizeof *srv, 0); /* lives on this stack frame */
  memset(srv, 0, sizeof *srv);
  srv->listen_fd = -1;
  lua_getfield(L, LUA_REGISTRYINDEX, "mc.boot");
  srv->boot = lua_touserdata(L, -1);
  lua_pop(L, 1);
  read_config(L, &srv->cfg, srv->boot->root);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv->cfg.port)};
  if (inet_pton(AF_INET, srv->cfg.bind, &addr.sin_addr) != 1)
    return luaL_error(L, "web: bad bind address");
  if (web_guard_init(&srv->guard, srv->cfg.conn_limit, srv->cfg.header_timeout,
                     srv->cfg.idle_timeout) != 0)
    return luaL_error(L, "web: cannot create a mutex");
  if (mc_pool_init(&srv->pool, srv->cfg.threads, load_app_state, srv) != 0) {
    web_guard_free(&srv->guard);
    luaL_pushfail(L); /* refuse to start with broken code */
    lua_pushliteral(L, "the app failed to load (see the log)");
    return 2;
  }

  sigset_t set, old;
  mc_control_signals(&set);
  pthread_sigmask(SIG_BLOCK, &set, &old); /* server threads inherit it: signals come here */
  reserve_descriptors(&srv->cfg);
  srv->listen_fd = listen_on(&addr);
  if (srv->listen_fd < 0 || start_threads(srv) != 0) {
    int e = errno;
    if (srv->listen_fd >= 0) close(srv->listen_fd);
    mc_pool_free(&srv->pool);
    web_guard_free(&srv->guard);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    luaL_pushfail(L);
    lua_pushfstring(L, "cannot listen on %s:%d: %s", srv->cfg.bind, srv->cfg.port, strerror(e));
    return 2;
  }
  printf("at=info msg=listening port=%d threads=%d reload=%s\n", srv->cfg.port, srv->cfg.threads,
         srv->cfg.watch ? "on" : "off");
  mc_watch w = {&srv->pool, srv->cfg.watch, sweep_slow_clients, srv};
  mc_watch_loop(&w, &set);
  drain(srv);
  close(srv->listen_fd);
  mc_pool_free(&srv->pool);
  web_guard_free(&srv->guard);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  printf("at=info msg=stopped\n");
  lua_pushboolean(L, 1);
  return 1;
}

int luaopen_mc_web_native(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"serve", web_serve}, {"headers", web_headers}, {"query", web_query},
    {"ip", web_ip},       {"finish", web_finish},   {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
