/* redis.c -- mc.redis_native: the Redis connection under mc.redis (core/lua/mc/
 * redis.lua). hiredis is only the reply parser (redisReader): Debian's hiredis
 * 0.14 has neither TLS nor connect timeouts, and its command formatter is slow
 * (see out_arg). The socket is ours: non-blocking, every wait a poll() against
 * a deadline, TLS through OpenSSL. A connection that fails mid-command is closed
 * (its replies can no longer be matched to commands) and reopened, with AUTH and
 * SELECT, by the next command.
 *
 * In a job's coroutine (core/sched.c) the wait for replies yields instead of
 * polling, and the call goes on in a continuation when the socket is readable;
 * the connection is marked as that coroutine's until the replies are read, and
 * another coroutine's call on it raises (each job gets its own: mc.conns).
 * Connecting and sending still block (against the same deadlines). */
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <lauxlib.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "host.h"
#include "options.h"

#define CONN_MT "mc.redis.conn"
#define PIPE_MT "mc.redis.pipeline"
#define READ_CHUNK 16384
#define OUT_KEEP (1 << 20) /* a bigger output buffer is given back after use */

enum { ST_OPEN, ST_BROKEN, ST_CLOSED };

/* A growing output buffer of RESP-encoded commands. */
typedef struct outbuf {
  char *p;
  size_t len, cap;
} outbuf;

/* One connection. Owned by its userdata: everything below is freed by
 * conn_close, which __gc, __close and close() share. */
typedef struct rconn {
  int state;
  int fd;              /* -1 when not connected */
  SSL_CTX *ctx;        /* made on first TLS connect, kept across reconnects */
  SSL *ssl;            /* NULL for plain TCP */
  redisReader *reader; /* made per connection: a new socket starts clean */
  redisReply *reply;   /* the reply being turned into Lua values */
  outbuf out;          /* encoded commands waiting to be sent */
  char *host, *user, *password, *ca_file;
  int port, db, tls, verify;
  int awaiting;          /* a write went out and nothing was read since */
  lua_State *waiter;     /* the coroutine whose replies are awaited, or NULL */
  double deadline;       /* when the awaited replies are due (mc_sched_now_ms) */
  lua_Integer want, got; /* a pipeline's replies: expected, read */
  int connect_ms, timeout_ms;
  char err[200]; /* the last failure, as returned to Lua */
} rconn;

/* ---- failures and time ---------------------------------------------------- */

static int fail(rconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(rconn *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
  return -1;
}

/* The stable short words scripts can test for, else the system's text. */
static int fail_errno(rconn *c, int e, int connecting) {
  char buf[128];
  switch (e) {
  case ECONNREFUSED: return fail(c, "connection refused");
  case ETIMEDOUT: return fail(c, "timeout");
  case EPIPE:
  case ECONNRESET: return fail(c, connecting ? "connection reset" : "connection lost");
  default: return fail(c, "%s", strerror_r(e, buf, sizeof buf));
  }
}

/* Waits until fd is ready for events or the deadline passes: 0 ready (or in
 * error: the next I/O call tells which), -1 with c->err otherwise. */
static int wait_fd(rconn *c, int fd, short events, double deadline) {
  for (;;) {
    double left = deadline - mc_sched_now_ms();
    if (left <= 0) return fail(c, "timeout");
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)ceil(left));
    if (n > 0) return 0;
    if (n < 0 && errno != EINTR) return fail_errno(c, errno, 0);
  }
}

/* ---- transport: TCP ------------------------------------------------------- */

/* Connects one address of the host before the deadline; 0 with c->fd set. */
static int try_addr(rconn *c, const struct addrinfo *ai, double deadline) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return fail_errno(c, errno, 1);
  int e = 0, one = 1;
  socklen_t elen = sizeof e;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      e = errno;
      goto cleanup;
    }
    if (wait_fd(c, fd, POLLOUT, deadline) != 0) goto cleanup;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0) e = errno;
    if (e != 0) goto cleanup;
  }
  /* replies are small and latency-bound; Nagle would hold the commands back */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  c->fd = fd;
  return 0;
cleanup:
  close(fd);
  return e != 0 ? fail_errno(c, e, 1) : -1;
}

static int tcp_connect(rconn *c, double deadline) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  char port[16];
  snprintf(port, sizeof port, "%d", c->port);
  int rc = getaddrinfo(c->host, port, &hints, &res);
  if (rc != 0) return fail(c, "resolve %s: %s", c->host, gai_strerror(rc));
  int status = -1;
  for (const struct addrinfo *ai = res; ai != NULL && status != 0; ai = ai->ai_next)
    status = try_addr(c, ai, deadline);
  freeaddrinfo(res);
  return status;
}

/* ---- transport: TLS ------------------------------------------------------- */

/* Heroku Redis presents a self-signed certificate, so verification is opt-in
 * (REDIS_TLS_VERIFY=1 in mc.redis); when on, the chain and the host name are
 * checked against ca_file or the system store. */
static int tls_context(rconn *c) {
  if ((c->ctx = SSL_CTX_new(TLS_client_method())) == NULL)
    return fail(c, "tls: cannot create context");
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  /* a retried SSL_write resumes where the last one stopped */
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (!c->verify) {
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    return 0;
  }
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  int ok = c->ca_file != NULL ? SSL_CTX_load_verify_locations(c->ctx, c->ca_file, NULL)
                              : SSL_CTX_set_default_verify_paths(c->ctx);
  return ok == 1 ? 0 : fail(c, "tls: cannot load CA certificates");
}

static int tls_fail(rconn *c, int rc) {
  long v = c->verify ? SSL_get_verify_result(c->ssl) : X509_V_OK;
  unsigned long e = ERR_peek_last_error();
  if (v != X509_V_OK)
    return fail(c, "tls: certificate verify failed: %s", X509_verify_cert_error_string(v));
  if (e != 0 && ERR_reason_error_string(e) != NULL)
    return fail(c, "tls: %s", ERR_reason_error_string(e));
  if (SSL_get_error(c->ssl, rc) == SSL_ERROR_SYSCALL && errno != 0) return fail_errno(c, errno, 1);
  return fail(c, "tls: handshake failed");
}

/* What an SSL call that returned rc waits for: POLLIN, POLLOUT, or 0 (failed). */
static short tls_want(rconn *c, int rc) {
  switch (SSL_get_error(c->ssl, rc)) {
  case SSL_ERROR_WANT_READ: return POLLIN;
  case SSL_ERROR_WANT_WRITE: return POLLOUT;
  default: return 0;
  }
}

static int tls_start(rconn *c, double deadline) {
  unsigned char ip[sizeof(struct in6_addr)];
  int is_ip = inet_pton(AF_INET, c->host, ip) == 1 || inet_pton(AF_INET6, c->host, ip) == 1;
  if (c->ctx == NULL && tls_context(c) != 0) return -1;
  ERR_clear_error();
  if ((c->ssl = SSL_new(c->ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
    return fail(c, "tls: cannot create session");
  if (!is_ip) SSL_set_tlsext_host_name(c->ssl, c->host);
  if (c->verify) {
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host)
                   : SSL_set1_host(c->ssl, c->host);
    if (ok != 1) return fail(c, "tls: cannot set the expected host name");
  }
  for (;;) {
    errno = 0;
    int rc = SSL_connect(c->ssl);
    if (rc == 1) return 0;
    short ev = tls_want(c, rc);
    if (ev == 0) return tls_fail(c, rc);
    if (wait_fd(c, c->fd, ev, deadline) != 0) return -1;
  }
}

/* ---- transport: bytes ----------------------------------------------------- */

/* Sends all of buf before the deadline: 0, or -1 with c->err. */
static int io_write(rconn *c, const char *buf, size_t len, double deadline) {
  size_t off = 0;
  while (off < len) {
    short ev = POLLOUT;
    size_t want = len - off < INT_MAX ? len - off : INT_MAX;
    if (c->ssl != NULL) {
      ERR_clear_error();
      int rc = SSL_write(c->ssl, buf + off, (int)want);
      if (rc > 0) {
        off += (size_t)rc;
        continue;
      }
      if ((ev = tls_want(c, rc)) == 0) return fail(c, "connection lost");
    } else {
      ssize_t n = send(c->fd, buf + off, want, MSG_NOSIGNAL);
      if (n >= 0) {
        off += (size_t)n;
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return fail_errno(c, errno, 0);
    }
    if (wait_fd(c, c->fd, ev, deadline) != 0) return -1;
  }
  c->awaiting = 1;
  return 0;
}

/* Reads what has arrived into buf without waiting: its length, 0 when nothing
 * has (*ev: what to wait for), or -1 with c->err. */
static ssize_t io_try_read(rconn *c, char *buf, size_t cap, short *ev) {
  c->awaiting = 0;
  for (;;) {
    *ev = POLLIN;
    if (c->ssl != NULL) {
      ERR_clear_error();
      int rc = SSL_read(c->ssl, buf, (int)cap);
      if (rc > 0) return rc;
      if ((*ev = tls_want(c, rc)) == 0) return fail(c, "connection lost");
      return 0;
    }
    ssize_t n = recv(c->fd, buf, cap, 0);
    if (n > 0) return n;
    if (n == 0) return fail(c, "connection lost");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return fail_errno(c, errno, 0);
    return 0;
  }
}

static void free_reply(rconn *c) {
  if (c->reply != NULL) freeReplyObject(c->reply);
  c->reply = NULL;
}

/* One try at the next reply, without waiting: 0 with c->reply (c owns it until
 * free_reply), 1 when more bytes must come first (*ev: what to wait for), or -1.
 * Right after a write the answer is not there yet: 1 before trying, which saves
 * a recv() per round trip. (OpenSSL may hold decrypted bytes: ask it.) */
static int read_step(rconn *c, short *ev) {
  char buf[READ_CHUNK];
  void *reply = NULL;
  free_reply(c);
  for (;;) {
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK)
      return fail(c, "protocol error: %s", c->reader->errstr);
    if (reply != NULL) {
      c->reply = reply;
      return 0;
    }
    if (c->awaiting && c->ssl == NULL) {
      c->awaiting = 0;
      *ev = POLLIN;
      return 1;
    }
    ssize_t n = io_try_read(c, buf, sizeof buf, ev);
    if (n == 0) return 1;
    if (n < 0) return -1;
    if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
      return fail(c, "protocol error: %s", c->reader->errstr);
  }
}

/* Reads the next reply into c->reply, which c owns until free_reply. */
static int read_reply(rconn *c, double deadline) {
  short ev;
  int rc;
  while ((rc = read_step(c, &ev)) == 1)
    if (wait_fd(c, c->fd, ev, deadline) != 0) return -1;
  return rc;
}

/* ---- connection lifecycle ------------------------------------------------- */

/* Drops the socket, keeping the configuration for the next connect. */
static void transport_close(rconn *c) {
  free_reply(c);
  if (c->reader != NULL) redisReaderFree(c->reader);
  c->reader = NULL;
  if (c->ssl != NULL) {
    if (c->state == ST_OPEN) SSL_shutdown(c->ssl); /* close_notify, not awaited */
    SSL_free(c->ssl);
  }
  c->ssl = NULL;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->awaiting = 0;
  if (c->state == ST_OPEN) c->state = ST_BROKEN;
}

static void conn_close(rconn *c) {
  if (c->state == ST_CLOSED) return;
  transport_close(c);
  if (c->ctx != NULL) SSL_CTX_free(c->ctx);
  c->ctx = NULL;
  free(c->out.p);
  free(c->host);
  free(c->user);
  free(c->ca_file);
  if (c->password != NULL) OPENSSL_cleanse(c->password, strlen(c->password));
  free(c->password);
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->state = ST_CLOSED;
}

/* ---- encoding commands ---------------------------------------------------- */

/* Commands are encoded here rather than by redisFormatCommandArgv: hiredis
 * 0.14 formats every length with snprintf into a fresh allocation, which was a
 * third of the client's time in pipelines (bench/redis.lua). RESP requests are
 * simple: *<argc>\r\n, then $<len>\r\n<bytes>\r\n per argument. */
static int out_reserve(outbuf *b, size_t extra) {
  if (b->cap - b->len >= extra) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < extra) cap *= 2;
  char *p = realloc(b->p, cap);
  if (p == NULL) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

/* Appends "<type><n>\r\n"; room for it is reserved by the caller. */
static void out_header(outbuf *b, char type, size_t n) {
  char digits[24];
  int i = 0;
  do {
    digits[i++] = (char)('0' + n % 10);
  } while ((n /= 10) != 0);
  b->p[b->len++] = type;
  while (i > 0) b->p[b->len++] = digits[--i];
  b->p[b->len++] = '\r';
  b->p[b->len++] = '\n';
}

#define HEADER_MAX 24 /* '$', 20 digits, CRLF */

static int out_arg(outbuf *b, const char *s, size_t len) {
  if (out_reserve(b, len + HEADER_MAX + 2) != 0) return -1;
  out_header(b, '$', len);
  memcpy(b->p + b->len, s, len);
  b->len += len;
  b->p[b->len++] = '\r';
  b->p[b->len++] = '\n';
  return 0;
}

static int out_command(outbuf *b, int argc) {
  if (out_reserve(b, HEADER_MAX) != 0) return -1;
  out_header(b, '*', (size_t)argc);
  return 0;
}

/* A command of the handshake (AUTH, SELECT): sent and answered without Lua. */
static int handshake_cmd(rconn *c, int argc, const char **argv, double deadline) {
  outbuf b = {0};
  int status = out_command(&b, argc);
  for (int i = 0; i < argc && status == 0; i++) status = out_arg(&b, argv[i], strlen(argv[i]));
  if (status != 0) status = fail(c, "out of memory");
  if (status == 0) status = io_write(c, b.p, b.len, deadline);
  if (b.p != NULL) OPENSSL_cleanse(b.p, b.cap); /* it held the password */
  free(b.p);
  if (status == 0) status = read_reply(c, deadline);
  if (status == 0 && c->reply->type == REDIS_REPLY_ERROR)
    status = fail(c, "%s: %s", argv[0], c->reply->str); /* never echoes the password */
  free_reply(c);
  return status;
}

/* Connects, with TLS, AUTH and SELECT as configured, within connect_ms. */
static int conn_open(rconn *c) {
  double deadline = mc_sched_now_ms() + c->connect_ms;
  char db[16];
  const char *auth[3] = {"AUTH", c->user != NULL ? c->user : c->password, c->password};
  const char *select[2] = {"SELECT", db};
  snprintf(db, sizeof db, "%d", c->db);
  if ((c->reader = redisReaderCreate()) == NULL) return fail(c, "out of memory");
  int status = tcp_connect(c, deadline);
  if (status == 0 && c->tls) status = tls_start(c, deadline);
  if (status == 0 && c->password != NULL)
    status = handshake_cmd(c, c->user != NULL ? 3 : 2, auth, deadline);
  if (status == 0 && c->db != 0) status = handshake_cmd(c, 2, select, deadline);
  if (status != 0) {
    transport_close(c);
    return -1;
  }
  c->state = ST_OPEN;
  return 0;
}

/* ---- Lua values <-> commands and replies ---------------------------------- */

static rconn *check_conn(lua_State *L) {
  return luaL_checkudata(L, 1, CONN_MT);
}

static int push_fail(lua_State *L, const char *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err);
  return 2;
}

/* Makes the number at idx a string: integers (and integral floats) without a
 * ".0", other floats with the fewest digits that read back the same. */
static void number_arg(lua_State *L, int idx) {
  char buf[64];
  if (lua_isinteger(L, idx)) {
    lua_pushfstring(L, "%I", lua_tointeger(L, idx));
  } else {
    lua_Number n = lua_tonumber(L, idx);
    luaL_argcheck(L, !isnan(n), idx, "NaN cannot be sent to Redis");
    /* cppcheck-suppress incorrectLogicOperator ; it misreads hex floats: the bounds are +-2^63 */
    if (n == floor(n) && n >= -0x1p63 && n < 0x1p63) {
      snprintf(buf, sizeof buf, "%lld", (long long)n);
    } else {
      snprintf(buf, sizeof buf, "%.15g", n);
      if (strtod(buf, NULL) != n) snprintf(buf, sizeof buf, "%.17g", n);
    }
    lua_pushstring(L, buf);
  }
  lua_replace(L, idx);
}

/* Appends the command made of the arguments 2..top of a call or p:call to b.
 * A value neither string nor number raises, as an argument error. Every check
 * comes before the first byte is appended, and out of memory takes the bytes
 * back: a pipeline whose fn catches the error must not send half a command. */
static void format_cmd(lua_State *L, outbuf *b) {
  int top = lua_gettop(L);
  size_t start = b->len;
  luaL_argcheck(L, top >= 2, 2, "command expected");
  for (int idx = 2; idx <= top; idx++) {
    int t = lua_type(L, idx);
    if (t == LUA_TNUMBER) number_arg(L, idx);
    else if (t != LUA_TSTRING) luaL_typeerror(L, idx, "string or number");
  }
  int status = out_command(b, top - 1);
  for (int idx = 2; idx <= top && status == 0; idx++) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    status = out_arg(b, s, len);
  }
  if (status != 0) {
    b->len = start;
    luaL_error(L, "out of memory");
  }
}

/* Pushes reply r: status and bulk -> string, integer -> integer, nil ->
 * mc.null, array -> table; an error inside an array -> {err = "..."}. */
static void push_reply(lua_State *L, const redisReply *r) {
  switch (r->type) {
  case REDIS_REPLY_STATUS:
  case REDIS_REPLY_STRING: lua_pushlstring(L, r->str, r->len); break;
  case REDIS_REPLY_INTEGER: lua_pushinteger(L, r->integer); break;
  case REDIS_REPLY_ARRAY:
    luaL_checkstack(L, 3, "reply nested too deeply");
    lua_createtable(L, r->elements < INT_MAX ? (int)r->elements : INT_MAX, 0);
    for (size_t i = 0; i < r->elements; i++) {
      push_reply(L, r->element[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case REDIS_REPLY_ERROR:
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, r->str, r->len);
    lua_setfield(L, -2, "err");
    break;
  default: mc_pushnull(L); break; /* nil */
  }
}

static void out_reset(outbuf *b) {
  b->len = 0;
  if (b->cap > OUT_KEEP) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

/* Sends b (reconnecting first when the last command broke the connection);
 * 0, or -1 with c->err and the socket closed, so that the next command
 * reconnects. The replies are due by *deadline. */
static int send_commands(rconn *c, outbuf *b, double *deadline) {
  /* a reply still held means pushing it raised (out of memory); in a pipeline
   * the later replies were left unread, so this socket can no longer match
   * replies to commands */
  if (c->reply != NULL) transport_close(c);
  if (c->state == ST_BROKEN && conn_open(c) != 0) return -1;
  *deadline = mc_sched_now_ms() + c->timeout_ms;
  int status = io_write(c, b->p, b->len, *deadline);
  out_reset(b);
  if (status != 0) transport_close(c);
  return status;
}

/* ---- methods -------------------------------------------------------------- */

/* r:call(cmd, ...) -> value | nil, "ERR ..." (a Redis error) | nil, err
 * (transport: "timeout", "connection lost", "closed", ...). */
static int push_call_reply(lua_State *L, rconn *c);

/* The next reply in a coroutine: 0 with c->reply, -1 with c->err, or 1 when
 * the socket has nothing yet and the coroutine must wait (ev). */
static int next_reply(rconn *c, short *ev) {
  int rc = read_step(c, ev);
  if (rc == 1 && mc_sched_now_ms() >= c->deadline) return fail(c, "timeout");
  return rc;
}

/* Yields until c's socket is ready for ev, c marked as L's meanwhile: the mark
 * is only ever set while L is suspended, so a raise cannot leave it behind. */
static int wait_replies(lua_State *L, rconn *c, short ev, lua_KContext ctx, lua_KFunction k) {
  c->waiter = L;
  return mc_sched_wait(L, NULL, c->fd, ev, c->deadline, ctx, k);
}

static int call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rconn *c = check_conn(L);
  c->waiter = NULL;
  if (c->state == ST_CLOSED) return push_fail(L, "closed"); /* by another coroutine meanwhile */
  short ev;
  int rc = next_reply(c, &ev);
  if (rc == 1) return wait_replies(L, c, ev, ctx, call_k);
  if (rc != 0) {
    transport_close(c);
    return push_fail(L, c->err);
  }
  return push_call_reply(L, c);
}

/* Raises when another coroutine awaits replies on c: they would be mixed up. */
static void check_waiter(lua_State *L, const rconn *c) {
  if (c->waiter != NULL && c->waiter != L)
    luaL_error(L, "redis: connection in use by another coroutine (each job needs its own)");
}

static int r_call(lua_State *L) {
  rconn *c = check_conn(L);
  double deadline;
  if (c->state == ST_CLOSED) {
    luaL_argcheck(L, lua_gettop(L) >= 2, 2, "command expected");
    return push_fail(L, "closed");
  }
  check_waiter(L, c);
  c->out.len = 0; /* what a raise left behind */
  format_cmd(L, &c->out);
  if (send_commands(c, &c->out, &deadline) != 0) return push_fail(L, c->err);
  if (mc_sched_can_yield(L)) {
    c->deadline = deadline;
    return call_k(L, LUA_OK, 0);
  }
  if (read_reply(c, deadline) != 0) {
    transport_close(c);
    return push_fail(L, c->err);
  }
  return push_call_reply(L, c);
}

/* Pushes c->reply as r:call's result and frees it. */
static int push_call_reply(lua_State *L, rconn *c) {
  if (c->reply->type == REDIS_REPLY_ERROR) {
    luaL_pushfail(L);
    lua_pushlstring(L, c->reply->str, c->reply->len);
    free_reply(c);
    return 2;
  }
  push_reply(L, c->reply);
  free_reply(c);
  return 1;
}

/* ---- pipelines ------------------------------------------------------------ */

/* Commands queued by p:call, encoded at once into the pipeline's own buffer
 * (so a raise in fn leaves the connection untouched); owned by its userdata. */
typedef struct rpipe {
  outbuf out;
  lua_Integer n;
  int sent;
} rpipe;

static rpipe *check_pipe(lua_State *L) {
  return luaL_checkudata(L, 1, PIPE_MT);
}

static void pipe_free(rpipe *p) {
  free(p->out.p);
  memset(&p->out, 0, sizeof p->out);
  p->n = 0;
  p->sent = 1;
}

/* native.pipeline() -> an empty pipeline for r:pipeline's fn. */
static int p_new(lua_State *L) {
  rpipe *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  luaL_setmetatable(L, PIPE_MT);
  return 1;
}

/* p:call(cmd, ...): queues the command; it leaves with the others after fn. */
static int p_call(lua_State *L) {
  rpipe *p = check_pipe(L);
  if (p->sent) return luaL_error(L, "pipeline already sent");
  format_cmd(L, &p->out);
  p->n++;
  return 0;
}

static int p_gc(lua_State *L) {
  pipe_free(check_pipe(L));
  return 0;
}

static int p_tostring(lua_State *L) {
  rpipe *p = check_pipe(L);
  lua_pushfstring(L, "mc.redis pipeline (%I queued%s): %p", p->n, p->sent ? ", sent" : "",
                  (void *)p);
  return 1;
}

/* The replies of a pipeline sent from a coroutine, into the table at index 3. */
static int pipeline_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rconn *c = check_conn(L);
  c->waiter = NULL;
  if (c->state == ST_CLOSED) return push_fail(L, "closed"); /* by another coroutine meanwhile */
  while (c->got < c->want) {
    short ev;
    int rc = next_reply(c, &ev);
    if (rc == 1) return wait_replies(L, c, ev, ctx, pipeline_k);
    if (rc != 0) {
      transport_close(c);
      return push_fail(L, c->err);
    }
    push_reply(L, c->reply);
    free_reply(c);
    lua_rawseti(L, 3, ++c->got);
  }
  lua_settop(L, 3);
  return 1;
}

/* r:send_pipeline(p) -> {value | {err = "..."}, ...} | nil, err. All the
 * commands leave in one write; the replies are read after. */
static int r_send_pipeline(lua_State *L) {
  rconn *c = check_conn(L);
  rpipe *p = luaL_checkudata(L, 2, PIPE_MT);
  double deadline;
  lua_Integer n = p->n;
  luaL_argcheck(L, !p->sent, 2, "pipeline already sent");
  if (c->state == ST_CLOSED) return push_fail(L, "closed");
  check_waiter(L, c);
  lua_settop(L, 2);
  lua_createtable(L, n < INT_MAX ? (int)n : INT_MAX, 0); /* index 3 */
  if (n == 0) return 1;
  int status = send_commands(c, &p->out, &deadline);
  pipe_free(p);
  if (status != 0) return push_fail(L, c->err);
  if (mc_sched_can_yield(L)) {
    c->deadline = deadline;
    c->want = n;
    c->got = 0;
    return pipeline_k(L, LUA_OK, 0);
  }
  for (lua_Integer i = 1; i <= n; i++) {
    if (read_reply(c, deadline) != 0) {
      transport_close(c);
      return push_fail(L, c->err);
    }
    push_reply(L, c->reply);
    free_reply(c);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* ---- more methods --------------------------------------------------------- */

#define MAX_SECONDS 86400

static int millis(double seconds) {
  return seconds * 1000 < 1 ? 1 : (int)(seconds * 1000); /* 0 would mean no limit */
}

static int timeout_ms(lua_State *L, int idx) {
  lua_Number s = luaL_checknumber(L, idx);
  luaL_argcheck(L, s > 0 && s <= MAX_SECONDS, idx, "seconds between 0 and 86400 expected");
  return millis(s);
}

/* r:set_timeout(seconds): the command timeout from now on. */
static int r_set_timeout(lua_State *L) {
  rconn *c = check_conn(L);
  int ms = timeout_ms(L, 2);
  if (c->state == ST_CLOSED) return push_fail(L, "closed");
  c->timeout_ms = ms;
  lua_pushboolean(L, 1);
  return 1;
}

static int r_close(lua_State *L) {
  conn_close(check_conn(L));
  lua_pushboolean(L, 1);
  return 1;
}

static int r_gc(lua_State *L) {
  conn_close(check_conn(L));
  return 0;
}

static int r_tostring(lua_State *L) {
  rconn *c = check_conn(L);
  if (c->state == ST_CLOSED) lua_pushfstring(L, "mc.redis connection (closed): %p", (void *)c);
  else
    lua_pushfstring(L, "mc.redis connection (%s%s:%d/%d): %p", c->tls ? "tls " : "", c->host,
                    c->port, c->db, (void *)c);
  return 1;
}

/* ---- module functions ----------------------------------------------------- */

/* cfg[key] copied, as the connection keeps it past this call; NULL when absent. */
static char *cfg_string(const mc_options *o, const char *key, int required) {
  const char *s = mc_opt_string(o, key, NULL, NULL);
  if (s == NULL) {
    if (required) luaL_error(o->L, "%s: %s must be a string", o->who, key);
    return NULL;
  }
  char *copy = strdup(s);
  if (copy == NULL) luaL_error(o->L, "out of memory");
  return copy;
}

/* native.connect{host=, port=, tls=, verify=, ca_file=, user=, password=, db=,
 * connect_timeout=, timeout=} -> conn | nil, err. mc.redis reads the URL. */
static int r_connect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  rconn *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->state = ST_BROKEN; /* owns nothing yet, and closes like a broken one */
  luaL_setmetatable(L, CONN_MT);
  mc_options o = {L, 1, "redis"};
  c->host = cfg_string(&o, "host", 1);
  c->user = cfg_string(&o, "user", 0);
  c->password = cfg_string(&o, "password", 0);
  c->ca_file = cfg_string(&o, "ca_file", 0);
  c->port = (int)mc_opt_integer(&o, "port", 6379, 1, 65535);
  c->db = (int)mc_opt_integer(&o, "db", 0, 0, INT_MAX);
  c->tls = mc_opt_boolean(&o, "tls", 0);
  c->verify = mc_opt_boolean(&o, "verify", 0);
  c->connect_ms = millis(mc_opt_seconds(&o, "connect_timeout", 5, MAX_SECONDS));
  c->timeout_ms = millis(mc_opt_seconds(&o, "timeout", 10, MAX_SECONDS));
  if (conn_open(c) != 0) {
    lua_pushstring(L, c->err);
    conn_close(c);
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

/* native.sha1_hex(s) -> the 40 hex digits EVALSHA names a script by. */
static int r_sha1_hex(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  if (EVP_Digest(s, len, md, &mdlen, EVP_sha1(), NULL) != 1) return luaL_error(L, "sha1 failed");
  for (unsigned int i = 0; i < mdlen; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  lua_pushlstring(L, hex, 2 * mdlen);
  return 1;
}

static const luaL_Reg conn_methods[] = {
  {"call", r_call},
  {"send_pipeline", r_send_pipeline},
  {"set_timeout", r_set_timeout},
  {"close", r_close},
  {NULL, NULL},
};

static const luaL_Reg conn_meta[] = {
  {"__gc", r_gc},
  {"__close", r_gc},
  {"__tostring", r_tostring},
  {NULL, NULL},
};

static const luaL_Reg pipe_meta[] = {
  {"__gc", p_gc},
  {"__close", p_gc},
  {"__tostring", p_tostring},
  {NULL, NULL},
};

static const luaL_Reg funcs[] = {
  {"connect", r_connect},
  {"pipeline", p_new},
  {"sha1_hex", r_sha1_hex},
  {NULL, NULL},
};

/* The module: connect, pipeline, sha1_hex, and methods (the connection's
 * method table, which mc.redis completes with pipeline and eval). */
int luaopen_mc_redis_native(lua_State *L) {
  luaL_newmetatable(L, PIPE_MT);
  luaL_setfuncs(L, pipe_meta, 0);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, p_call);
  lua_setfield(L, -2, "call");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, CONN_MT);
  luaL_setfuncs(L, conn_meta, 0);
  luaL_newlib(L, conn_methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  luaL_newlib(L, funcs);
  lua_insert(L, -2);
  lua_setfield(L, -2, "methods");
  lua_remove(L, -2);
  return 1;
}
