/* pg.c -- mc.pg_native: the C half of mc.pg (core/lua/mc/pg.lua), over libpq.
 *
 * C gives the raw primitives: connect, query with $n parameters (PQexecParams,
 * text format), exec (PQexec, several statements), copy_in (COPY ... FROM STDIN
 * in 64 KiB chunks) and the Postgres array text parser (those text forms: pg_text.c). Values come back as
 * strings unless the decoders table (registry, filled by the Lua half, keyed by
 * type OID) has a function for the column's type: decoding is table-driven.
 *
 * Every connection runs with DateStyle=ISO, TimeZone=UTC and
 * standard_conforming_strings=on, so text forms are stable and quote_literal is
 * right. A connection found lost is reset once, transparently, when no
 * transaction was open; inside one the call fails and the next call reconnects.
 *
 * In a job's coroutine (core/sched.c) query and exec go through libpq's
 * asynchronous API and yield while the server works (see "in a job's coroutine").
 *
 * Ownership: a PGconn belongs to its conn userdata, a PGresult to a result box
 * userdata created before the call that produces it; both free in __gc. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>

#include "host.h"
#include "pg_text.h"

#define CONN_MT "mc.pg.conn"
#define RESULT_MT "mc.pg.result"
#define DECODERS_KEY "mc.pg.decoders"  /* registry: {[oid] = function(text)} */
#define ENCODE_KEY "mc.pg.json_encode" /* registry: mc.json.encode, for table params */
#define CONNECT_TIMEOUT "10"           /* seconds, unless the URL says otherwise */
#define PARAMS_INLINE 16
#define STMT_CACHE_MAX 256     /* prepared statements per connection; more run unnamed */
#define COPY_CHUNK (64 * 1024) /* larger chunks block in send() longer, leaving the server idle */

/* A conn's user value 1 is its statement cache, {[sql] = statement name}, valid
 * for the session numbered cache_session: a reconnect makes it stale. */
typedef struct pg_conn {
  PGconn *pg;     /* NULL once closed */
  int timeout_ms; /* statement_timeout, reapplied after a reconnect; 0 = none */
  int cache_max;  /* 0: never prepare (a transaction-mode pooler) */
  int cache_count;
  unsigned session; /* bumped by every reconnect */
  unsigned cache_session;
  unsigned next_stmt;
  int in_block;      /* inside conn:transaction(fn) */
  int block_lost;    /* the connection was lost in that block: refuse until it ends */
  lua_State *waiter; /* the coroutine awaiting a result on it (core/sched.c), or NULL */
} pg_conn;

typedef struct pg_query {
  const char *sql;
  int nparams; /* -1: PQexec, no parameters, several statements allowed */
  const char *const *values;
  const char *name; /* prepared statement to use, NULL for an unnamed one */
  int prepared;     /* name exists in the current session */
  int was_cached;   /* name came from the statement cache */
} pg_query;

enum { RUN_OK, RUN_LOST, RUN_LOST_IN_TX };

/* ---- handles ------------------------------------------------------------- */

static void conn_release(pg_conn *c) {
  if (c->pg != NULL) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
}

static int conn_gc(lua_State *L) {
  conn_release(luaL_checkudata(L, 1, CONN_MT));
  return 0;
}

static int conn_tostring(lua_State *L) {
  pg_conn *c = luaL_checkudata(L, 1, CONN_MT);
  if (c->pg == NULL) lua_pushliteral(L, "mc.pg.conn (closed)");
  else lua_pushfstring(L, "mc.pg.conn (%s:%s/%s)", PQhost(c->pg), PQport(c->pg), PQdb(c->pg));
  return 1;
}

static int result_gc(lua_State *L) {
  PGresult **box = luaL_checkudata(L, 1, RESULT_MT);
  PQclear(*box);
  *box = NULL;
  return 0;
}

/* A box that will own a PGresult, on the stack top: made before the result is. */
static PGresult **new_result_box(lua_State *L) {
  PGresult **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, RESULT_MT);
  return box;
}

static void box_clear(PGresult **box) {
  PQclear(*box);
  *box = NULL;
}

/* The open conn at index 1, or NULL with nil, "closed" pushed. */
static pg_conn *check_open(lua_State *L) {
  pg_conn *c = luaL_checkudata(L, 1, CONN_MT);
  if (c->waiter != NULL && c->waiter != L)
    luaL_error(L, "pg: connection in use by another coroutine (each job needs its own)");
  if (c->pg != NULL) return c;
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return NULL;
}

static int push_fail(lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* nil, err from the connection's last error: its first line, with the common
 * failures as short stable tokens. libpq never puts the password in it. */
static int push_conn_error(lua_State *L, PGconn *pg) {
  const char *msg = pg ? PQerrorMessage(pg) : "out of memory";
  if (strstr(msg, "Connection refused")) return push_fail(L, "connection refused");
  if (strstr(msg, "timeout expired")) return push_fail(L, "timeout");
  size_t n = strcspn(msg, "\n");
  lua_pushnil(L);
  if (n == 0) lua_pushliteral(L, "connection failed");
  else lua_pushlstring(L, msg, n);
  return 2;
}

/* nil, message[ (detail)], sqlstate for a failed statement. */
static int push_sql_error(lua_State *L, const PGresult *r) {
  const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  lua_pushnil(L);
  if (msg == NULL) lua_pushstring(L, PQresultErrorMessage(r));
  else if (detail == NULL) lua_pushstring(L, msg);
  else lua_pushfstring(L, "%s (%s)", msg, detail);
  if (state == NULL) return 2;
  lua_pushstring(L, state);
  return 3;
}

/* ---- connecting and running ---------------------------------------------- */

static void swallow_notice(void *arg, const char *message) {
  (void)arg; /* NOTICEs (e.g. "table does not exist, skipping") are not errors */
  (void)message;
}

/* The session settings every call relies on; 0 or -1 (error in c->pg). */
static int session_init(pg_conn *c) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SET DateStyle = ISO; SET TimeZone = 'UTC'; "
           "SET standard_conforming_strings = on; SET statement_timeout = %d",
           c->timeout_ms);
  PGresult *r = PQexec(c->pg, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  return ok ? 0 : -1;
}

/* 0 when c->pg is usable, reconnecting first if it was found lost. A new
 * session has none of the old one's prepared statements. */
static int conn_ready(pg_conn *c, pg_query *q) {
  if (PQstatus(c->pg) == CONNECTION_OK) return 0;
  c->session++;
  if (q != NULL) q->prepared = 0;
  PQreset(c->pg);
  if (PQstatus(c->pg) != CONNECTION_OK) return -1;
  return session_init(c);
}

static PGresult *send_query(PGconn *pg, pg_query *q) {
  if (q->nparams < 0) return PQexec(pg, q->sql);
  if (q->name == NULL) return PQexecParams(pg, q->sql, q->nparams, NULL, q->values, NULL, NULL, 0);
  if (!q->prepared) {
    PGresult *r = PQprepare(pg, q->name, q->sql, q->nparams, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) return r;
    PQclear(r);
    q->prepared = 1;
  }
  return PQexecPrepared(pg, q->name, q->nparams, q->values, NULL, NULL, 0);
}

/* A cached statement the server no longer has (DISCARD ALL, DEALLOCATE) or whose
 * plan changed result type under it (ALTER TABLE): prepare it again. */
static int stale_statement(pg_conn *c, pg_query *q, const PGresult *r) {
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (q->name == NULL || state == NULL) return 0;
  const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  if (strcmp(state, "0A000") == 0 && q->prepared && msg && strstr(msg, "cached plan")) {
    char sql[64];
    snprintf(sql, sizeof sql, "DEALLOCATE %s", q->name);
    PQclear(PQexec(c->pg, sql));
  } else if (strcmp(state, "26000") != 0) {
    return 0;
  }
  q->prepared = 0;
  return 1;
}

/* Runs q into *out (the caller's result box). A connection lost while idle is
 * reset and q sent once more: the server may have run it before it went away,
 * as with any retry after a lost reply. */
static int run_query(pg_conn *c, pg_query *q, PGresult **out) {
  if (c->block_lost) return RUN_LOST_IN_TX; /* a reconnect would run the rest of fn outside it */
  if (conn_ready(c, q) != 0) return RUN_LOST;
  int idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
  *out = send_query(c->pg, q);
  if (PQstatus(c->pg) == CONNECTION_BAD && idle) {
    box_clear(out);
    if (conn_ready(c, q) != 0) return RUN_LOST;
    *out = send_query(c->pg, q);
  } else if (idle && PQresultStatus(*out) == PGRES_FATAL_ERROR && stale_statement(c, q, *out)) {
    box_clear(out);
    *out = send_query(c->pg, q);
  }
  if (PQstatus(c->pg) != CONNECTION_BAD) return RUN_OK;
  if (idle) return RUN_LOST;
  c->block_lost = c->in_block;
  return RUN_LOST_IN_TX;
}

static int push_run_error(lua_State *L, pg_conn *c, int status) {
  if (status == RUN_LOST_IN_TX) return push_fail(L, "connection lost in transaction");
  return push_conn_error(L, c->pg);
}

/* Leaves COPY mode a statement put the connection in, then drains results. */
static void abandon_copy(PGconn *pg, ExecStatusType st) {
  char *buf;
  if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) PQputCopyEnd(pg, "use conn:copy_in");
  if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
    while (PQgetCopyData(pg, &buf, 0) > 0) PQfreemem(buf);
  PGresult *r;
  while ((r = PQgetResult(pg)) != NULL) PQclear(r);
}

/* pg.connect(url[, statement_timeout_ms[, prepare]]) -> conn | nil, err */
static int pg_connect(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  lua_Integer timeout = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, timeout >= 0 && timeout <= 0x7fffffff, 2, "out of range");
  int prepare = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
  /* earlier keywords are defaults: the URL's own values override them */
  const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
  const char *vals[] = {CONNECT_TIMEOUT, "multiconnect", url, NULL};
  pg_conn *c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->timeout_ms = (int)timeout;
  c->cache_max = prepare ? STMT_CACHE_MAX : 0;
  luaL_setmetatable(L, CONN_MT);
  c->pg = PQconnectdbParams(keys, vals, 1);
  if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) goto fail;
  PQsetNoticeProcessor(c->pg, swallow_notice, NULL);
  if (session_init(c) != 0) goto fail;
  return 1;
fail:
  push_conn_error(L, c->pg);
  conn_release(c);
  return 2;
}

/* ---- parameters ---------------------------------------------------------- */

static const char *push_number_param(lua_State *L, int idx) {
  char buf[64];
  size_t n = lua_isinteger(L, idx)
               ? mc_pg_format_integer(lua_tointeger(L, idx), buf)
               : mc_pg_format_double((double)lua_tonumber(L, idx), buf); /* "1" for 1.0 */
  return lua_pushlstring(L, buf, n);
}

static const char *push_json_param(lua_State *L, int idx) {
  lua_getfield(L, LUA_REGISTRYINDEX, ENCODE_KEY);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2)) {
    luaL_argerror(L, idx, lua_pushfstring(L, "cannot encode as JSON: %s", lua_tostring(L, -1)));
  }
  lua_pop(L, 1);
  return lua_tostring(L, -1);
}

/* The text form of the parameter at idx, NULL for SQL NULL. Strings made here
 * stay on the stack, which anchors them until the call returns. */
static const char *param_text(lua_State *L, int idx) {
  size_t len;
  const char *s;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return NULL;
  case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? "t" : "f";
  case LUA_TNUMBER: return push_number_param(L, idx);
  case LUA_TTABLE: return push_json_param(L, idx);
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &len);
    if (memchr(s, '\0', len) != NULL) luaL_argerror(L, idx, "contains a NUL byte");
    return s;
  case LUA_TLIGHTUSERDATA:
    if (mc_isnull(L, idx)) return NULL;
    /* fallthrough */
  default:
    luaL_argerror(L, idx,
                  lua_pushfstring(L, "unsupported parameter type %s", luaL_typename(L, idx)));
    return NULL;
  }
}

/* ---- results ------------------------------------------------------------- */

static void push_cell(lua_State *L, const PGresult *r, int row, int col, int decoder) {
  if (PQgetisnull(r, row, col)) {
    mc_pushnull(L);
    return;
  }
  if (!lua_isnil(L, decoder)) lua_pushvalue(L, decoder);
  lua_pushlstring(L, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
  if (!lua_isnil(L, decoder)) lua_call(L, 1, 1);
}

/* rows = {{col = value, ...}, ..., columns = {names}, affected = n | nil} */
static void push_rows(lua_State *L, const PGresult *r) {
  int nrows = PQntuples(r), ncols = PQnfields(r);
  luaL_checkstack(L, ncols + 8, "too many columns");
  lua_createtable(L, nrows, 2);
  int rows = lua_gettop(L), names = rows + 1, decoders = rows + 2, first = rows + 3;
  lua_createtable(L, ncols, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, DECODERS_KEY);
  for (int j = 0; j < ncols; j++) {
    lua_pushstring(L, PQfname(r, j));
    lua_rawseti(L, names, j + 1);
    lua_rawgeti(L, decoders, (lua_Integer)PQftype(r, j)); /* at first + j */
  }
  for (int i = 0; i < nrows; i++) {
    lua_createtable(L, 0, ncols);
    for (int j = 0; j < ncols; j++) {
      lua_rawgeti(L, names, j + 1);
      push_cell(L, r, i, j, first + j);
      lua_rawset(L, -3);
    }
    lua_rawseti(L, rows, i + 1);
  }
  lua_settop(L, names);
  lua_setfield(L, rows, "columns");
  const char *tag = PQcmdTuples((PGresult *)r);
  if (*tag != '\0') {
    lua_pushinteger(L, (lua_Integer)strtoll(tag, NULL, 10));
    lua_setfield(L, rows, "affected");
  }
}

/* Runs q and pushes rows or nil, err[, sqlstate]. */
static int query_push(lua_State *L, pg_conn *c, pg_query *q) {
  PGresult **box = new_result_box(L);
  int status = run_query(c, q, box);
  if (status != RUN_OK) return push_run_error(L, c, status);
  if (*box == NULL) return push_conn_error(L, c->pg);
  ExecStatusType st = PQresultStatus(*box);
  switch (st) {
  case PGRES_TUPLES_OK:
  case PGRES_COMMAND_OK:
  case PGRES_EMPTY_QUERY:
    push_rows(L, *box);
    box_clear(box);
    return 1;
  case PGRES_COPY_IN:
  case PGRES_COPY_OUT:
  case PGRES_COPY_BOTH:
    box_clear(box);
    abandon_copy(c->pg, st);
    return push_fail(L, "COPY needs conn:copy_in");
  default: return push_sql_error(L, *box);
  }
}

/* ---- the statement cache ------------------------------------------------- */

/* Pushes the conn's cache (at index 1), renewed if a reconnect made it stale,
 * and points q at the statement for q->sql: cached, or a new name to prepare
 * while there is room. Returns the cache's stack index. */
static int cache_lookup(lua_State *L, pg_conn *c, pg_query *q) {
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE || c->cache_session != c->session) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
    c->cache_session = c->session;
    c->cache_count = 0;
  }
  int cache = lua_gettop(L);
  if (lua_getfield(L, cache, q->sql) == LUA_TSTRING) {
    q->name = lua_tostring(L, -1); /* anchored in the cache */
    q->prepared = q->was_cached = 1;
  } else if (c->cache_count < c->cache_max) {
    q->name = lua_pushfstring(L, "mc_%d", (int)(c->next_stmt++ % 0x7fffffff));
  }
  return cache;
}

static void cache_store(lua_State *L, pg_conn *c, int cache, const pg_query *q) {
  lua_pushstring(L, q->name);
  lua_setfield(L, cache, q->sql);
  c->cache_count++;
}

/* The SQL text at idx. libpq takes it as a C string, so a NUL would cut it
 * short and another statement than the one written would run: raise. */
static const char *check_sql(lua_State *L, int idx) {
  size_t len;
  const char *sql = luaL_checklstring(L, idx, &len);
  if (memchr(sql, '\0', len) != NULL) luaL_argerror(L, idx, "SQL text contains a NUL byte");
  return sql;
}

/* ---- in a job's coroutine: libpq's asynchronous API --------------------------
 *
 * The same query as run_query and query_push, sent with PQsend* and awaited with
 * PQconsumeInput/PQisBusy on the socket, the coroutine yielding (core/sched.c)
 * while the server works. A prepare and its execution are two waits. Reconnects
 * (PQreset) and the DEALLOCATE of a stale statement still block: they are rare. */

enum { PHASE_PREPARE, PHASE_QUERY };

typedef struct pg_async {
  pg_query q;       /* its strings are anchored on the caller's stack */
  PGresult **box;   /* the result box, on the stack too */
  int phase, idle;  /* idle: no transaction was open when sent */
  int retried;      /* a lost connection or a stale statement was retried once */
  int cache;        /* stack index of the statement cache, 0 for exec */
  int idx;          /* this struct's own stack index: the continuation's ctx */
  unsigned session; /* c->session when the call began */
} pg_async;

static int async_k(lua_State *L, int status, lua_KContext ctx);

/* Sends the next request of a; 0, or -1 when the connection failed. */
static int async_send(pg_conn *c, pg_async *a) {
  pg_query *q = &a->q;
  a->phase = PHASE_QUERY;
  if (q->nparams < 0) return PQsendQuery(c->pg, q->sql) ? 0 : -1;
  if (q->name == NULL)
    return PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->values, NULL, NULL, 0) ? 0 : -1;
  if (!q->prepared) {
    a->phase = PHASE_PREPARE;
    return PQsendPrepare(c->pg, q->name, q->sql, q->nparams, NULL) ? 0 : -1;
  }
  return PQsendQueryPrepared(c->pg, q->name, q->nparams, q->values, NULL, NULL, 0) ? 0 : -1;
}

/* Reads what has arrived into a->box (the first error, else the last result):
 * 1 when every result is in (or a COPY began), 0 when the server is still busy. */
static int async_collect(pg_conn *c, pg_async *a) {
  if (PQconsumeInput(c->pg) == 0) return 1; /* lost: PQstatus says so */
  while (!PQisBusy(c->pg)) {
    PGresult *r = PQgetResult(c->pg);
    if (r == NULL) return 1;
    ExecStatusType st = PQresultStatus(r);
    if (*a->box != NULL && PQresultStatus(*a->box) == PGRES_FATAL_ERROR) {
      PQclear(r);
    } else {
      box_clear(a->box);
      *a->box = r;
    }
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) return 1;
  }
  return 0;
}

/* Pushes the outcome of a's query, as query_push does, and stores a newly
 * prepared statement in the cache. */
static int async_finish(lua_State *L, pg_conn *c, pg_async *a) {
  pg_query *q = &a->q;
  if (*a->box == NULL) return push_conn_error(L, c->pg);
  ExecStatusType st = PQresultStatus(*a->box);
  switch (st) {
  case PGRES_TUPLES_OK:
  case PGRES_COMMAND_OK:
  case PGRES_EMPTY_QUERY: push_rows(L, *a->box); break;
  case PGRES_COPY_IN:
  case PGRES_COPY_OUT:
  case PGRES_COPY_BOTH:
    box_clear(a->box);
    abandon_copy(c->pg, st);
    return push_fail(L, "COPY needs conn:copy_in");
  default: return push_sql_error(L, *a->box);
  }
  box_clear(a->box);
  if (a->cache != 0 && q->prepared && !q->was_cached && a->session == c->session) {
    int top = lua_gettop(L);
    cache_store(L, c, a->cache, q);
    lua_settop(L, top);
  }
  return 1;
}

/* Sends (reconnecting first when the connection was found lost) and waits. */
static int async_start(lua_State *L, pg_conn *c, pg_async *a) {
  if (c->block_lost) return push_fail(L, "connection lost in transaction");
  if (conn_ready(c, &a->q) != 0) return push_conn_error(L, c->pg);
  a->idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
  if (async_send(c, a) != 0 && !(a->idle && !a->retried)) {
    if (!a->idle) c->block_lost = c->in_block;
    return a->idle ? push_conn_error(L, c->pg) : push_fail(L, "connection lost in transaction");
  }
  return async_k(L, LUA_OK, a->idx);
}

/* What follows a finished round: a lost connection, the second half of a
 * prepare, a stale statement, or the result. */
static int async_next(lua_State *L, pg_conn *c, pg_async *a) {
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    box_clear(a->box);
    if (!a->idle) {
      c->block_lost = c->in_block;
      return push_fail(L, "connection lost in transaction");
    }
    if (a->retried) return push_conn_error(L, c->pg);
    a->retried = 1; /* as run_query: the server may have run it before it went away */
    return async_start(L, c, a);
  }
  if (a->phase == PHASE_PREPARE && PQresultStatus(*a->box) == PGRES_COMMAND_OK) {
    box_clear(a->box);
    a->q.prepared = 1;
    if (async_send(c, a) != 0) return async_next(L, c, a);
    return async_k(L, LUA_OK, a->idx);
  }
  if (a->idle && !a->retried && PQresultStatus(*a->box) == PGRES_FATAL_ERROR &&
      stale_statement(c, &a->q, *a->box)) {
    box_clear(a->box);
    a->retried = 1;
    if (async_send(c, a) != 0) return async_next(L, c, a);
    return async_k(L, LUA_OK, a->idx);
  }
  return async_finish(L, c, a);
}

/* The continuation: collect, wait on the socket while the server is busy.
 * ctx is the stack index of the pg_async. */
static int async_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  pg_conn *c = luaL_checkudata(L, 1, CONN_MT);
  pg_async *a = lua_touserdata(L, (int)ctx);
  if (c->pg == NULL) {
    c->waiter = NULL;
    return push_fail(L, "closed");
  }
  if (!async_collect(c, a)) {
    c->waiter = L;
    return mc_sched_wait(L, NULL, PQsocket(c->pg), POLLIN, 0, ctx, async_k);
  }
  c->waiter = NULL;
  return async_next(L, c, a);
}

/* Runs q from a coroutine; cache: the statement cache's stack index, or 0. */
static int async_query(lua_State *L, pg_conn *c, const pg_query *q, int cache) {
  pg_async *a = lua_newuserdatauv(L, sizeof *a, 0);
  memset(a, 0, sizeof *a);
  a->idx = lua_gettop(L);
  a->q = *q;
  if (q->nparams > 0) { /* the values array may be on the C stack: copy it */
    const char **values = lua_newuserdatauv(L, (size_t)q->nparams * sizeof *values, 0);
    memcpy(values, q->values, (size_t)q->nparams * sizeof *values);
    a->q.values = values;
  }
  a->box = new_result_box(L);
  a->cache = cache;
  a->session = c->session;
  return async_start(L, c, a);
}

/* conn:query(sql, ...) -> rows | nil, err[, sqlstate] */
static int conn_query(lua_State *L) {
  pg_conn *c = check_open(L);
  if (c == NULL) return 2;
  const char *sql = check_sql(L, 2);
  int top = lua_gettop(L), n = top - 2;
  luaL_argcheck(L, n <= 65535, 3, "too many parameters");
  const char *inline_values[PARAMS_INLINE];
  const char **values = inline_values;
  if (n > PARAMS_INLINE) values = lua_newuserdatauv(L, (size_t)n * sizeof *values, 0);
  luaL_checkstack(L, n + 8, "too many parameters");
  for (int i = 0; i < n; i++) values[i] = param_text(L, 3 + i);
  pg_query q = {sql, n, values, NULL, 0, 0};
  int cache = cache_lookup(L, c, &q);
  if (mc_sched_can_yield(L)) return async_query(L, c, &q, cache);
  int session = (int)c->session, nret = query_push(L, c, &q);
  if (q.prepared && !q.was_cached && (unsigned)session == c->session) cache_store(L, c, cache, &q);
  return nret;
}

/* conn:exec(sql) -> rows of the last statement | nil, err[, sqlstate] */
static int conn_exec(lua_State *L) {
  pg_conn *c = check_open(L);
  if (c == NULL) return 2;
  pg_query q = {check_sql(L, 2), -1, NULL, NULL, 0, 0};
  if (mc_sched_can_yield(L)) return async_query(L, c, &q, 0);
  return query_push(L, c, &q);
}

/* ---- COPY FROM STDIN ----------------------------------------------------- */

typedef struct copy_buf {
  PGconn *pg;
  const char *bad; /* why encoding stopped: a static string */
  size_t len;
  char data[COPY_CHUNK];
} copy_buf;

static int copy_flush(copy_buf *b) {
  if (b->len > 0 && PQputCopyData(b->pg, b->data, (int)b->len) != 1) return -1;
  b->len = 0;
  return 0;
}

static int copy_put(copy_buf *b, const char *s, size_t n) {
  while (n > 0) {
    if (b->len == COPY_CHUNK && copy_flush(b) != 0) return -1;
    size_t k = COPY_CHUNK - b->len < n ? COPY_CHUNK - b->len : n;
    memcpy(b->data + b->len, s, k);
    b->len += k;
    s += k;
    n -= k;
  }
  return 0;
}

/* A string in COPY text format: backslash, tab, newline and CR escaped. */
static int copy_string(copy_buf *b, const char *s, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    const char *esc;
    switch (s[i]) {
    case '\\': esc = "\\\\"; break;
    case '\t': esc = "\\t"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\0': b->bad = "NUL byte in a value"; return -1;
    default: continue;
    }
    if (copy_put(b, s + start, i - start) != 0 || copy_put(b, esc, 2) != 0) return -1;
    start = i + 1;
  }
  return copy_put(b, s + start, n - start);
}

/* The value at the stack top; raises nothing (a bad type sets b->bad). */
static int copy_value(lua_State *L, copy_buf *b) {
  char num[64];
  size_t len;
  const char *s;
  switch (lua_type(L, -1)) {
  case LUA_TSTRING: s = lua_tolstring(L, -1, &len); return copy_string(b, s, len);
  case LUA_TNUMBER:
    if (lua_isinteger(L, -1)) len = mc_pg_format_integer(lua_tointeger(L, -1), num);
    else len = mc_pg_format_double((double)lua_tonumber(L, -1), num);
    return copy_put(b, num, len);
  case LUA_TBOOLEAN: return copy_put(b, lua_toboolean(L, -1) ? "t" : "f", 1);
  case LUA_TNIL: return copy_put(b, "\\N", 2);
  case LUA_TLIGHTUSERDATA:
    if (mc_isnull(L, -1)) return copy_put(b, "\\N", 2);
    /* fallthrough */
  default: b->bad = "unsupported value type"; return -1;
  }
}

static int copy_row(lua_State *L, copy_buf *b, int row) {
  if (lua_type(L, row) != LUA_TTABLE) {
    b->bad = "row is not a table";
    return -1;
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, row);
  for (lua_Integer j = 1; j <= n; j++) {
    if (j > 1 && copy_put(b, "\t", 1) != 0) return -1;
    lua_rawgeti(L, row, j);
    int rc = copy_value(L, b);
    lua_pop(L, 1);
    if (rc != 0) return -1;
  }
  return copy_put(b, "\n", 1);
}

/* Sends rows[1..n]: 0, the index of a row with a bad value, or -1 when sending
 * failed. */
static lua_Integer copy_rows(lua_State *L, copy_buf *b, int rows) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, rows);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, rows, i);
    int rc = copy_row(L, b, lua_gettop(L));
    lua_pop(L, 1);
    if (rc != 0) return b->bad != NULL ? i : -1;
  }
  return copy_flush(b);
}

/* Ends the COPY and pushes the row count or nil, err[, sqlstate]; a bad value
 * aborts the COPY first and then raises. */
static int copy_finish(lua_State *L, pg_conn *c, copy_buf *b, lua_Integer failed) {
  if (failed > 0) {
    PQputCopyEnd(c->pg, b->bad);
    abandon_copy(c->pg, PGRES_COMMAND_OK);
    return luaL_error(L, "copy_in: row %I: %s", (LUAI_UACINT)failed, b->bad);
  }
  PGresult **box = new_result_box(L);
  if (failed < 0 || PQputCopyEnd(c->pg, NULL) != 1) {
    abandon_copy(c->pg, PGRES_COMMAND_OK);
    return push_conn_error(L, c->pg);
  }
  *box = PQgetResult(c->pg);
  int nret = 1;
  if (PQresultStatus(*box) == PGRES_COMMAND_OK)
    lua_pushinteger(L, (lua_Integer)strtoll(PQcmdTuples(*box), NULL, 10));
  else if (*box != NULL) nret = push_sql_error(L, *box);
  else nret = push_conn_error(L, c->pg);
  abandon_copy(c->pg, PGRES_COMMAND_OK); /* the final NULL */
  return nret;
}

/* conn:copy_in(sql, rows) -> number of rows | nil, err[, sqlstate]
 * sql is COPY ... FROM STDIN (text format); rows an array of arrays of values
 * (strings, numbers, booleans, nil/mc.null for NULL). */
static int conn_copy_in(lua_State *L) {
  pg_conn *c = check_open(L);
  if (c == NULL) return 2;
  pg_query q = {check_sql(L, 2), -1, NULL, NULL, 0, 0};
  luaL_checktype(L, 3, LUA_TTABLE);
  copy_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->pg = c->pg;
  b->bad = NULL;
  b->len = 0;
  PGresult **box = new_result_box(L);
  int status = run_query(c, &q, box);
  if (status != RUN_OK) return push_run_error(L, c, status);
  if (*box == NULL) return push_conn_error(L, c->pg);
  ExecStatusType st = PQresultStatus(*box);
  if (st == PGRES_FATAL_ERROR) return push_sql_error(L, *box);
  box_clear(box);
  if (st != PGRES_COPY_IN) {
    abandon_copy(c->pg, st);
    return luaL_argerror(L, 2, "not a COPY ... FROM STDIN statement");
  }
  b->pg = c->pg; /* run_query may have reconnected */
  return copy_finish(L, c, b, copy_rows(L, b, 3));
}

/* ---- the rest of the handle ---------------------------------------------- */

/* conn:set_timeout(ms) -> true | nil, err: statement_timeout, 0 for none */
static int conn_set_timeout(lua_State *L) {
  pg_conn *c = check_open(L);
  if (c == NULL) return 2;
  lua_Integer ms = luaL_checkinteger(L, 2);
  luaL_argcheck(L, ms >= 0 && ms <= 0x7fffffff, 2, "out of range");
  c->timeout_ms = (int)ms;
  if (conn_ready(c, NULL) != 0 || session_init(c) != 0) return push_conn_error(L, c->pg);
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:status() -> "idle" | "active" | "intrans" | "inerror" | "unknown" */
static int conn_status(lua_State *L) {
  static const char *const names[] = {"idle", "active", "intrans", "inerror", "unknown"};
  pg_conn *c = check_open(L);
  if (c == NULL) return 2;
  PGTransactionStatusType st = PQtransactionStatus(c->pg);
  lua_pushstring(L, names[st <= PQTRANS_UNKNOWN ? st : PQTRANS_UNKNOWN]);
  return 1;
}

/* conn:_transaction_block(on): set by transaction() around fn. Once the
 * connection is lost inside fn, every call fails until the block ends, as
 * Postgres refuses statements in an aborted transaction. */
static int conn_transaction_block(lua_State *L) {
  pg_conn *c = luaL_checkudata(L, 1, CONN_MT);
  c->in_block = lua_toboolean(L, 2);
  c->block_lost = 0;
  return 0;
}

static int conn_close(lua_State *L) {
  conn_release(luaL_checkudata(L, 1, CONN_MT));
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- module -------------------------------------------------------------- */

static void make_metatables(lua_State *L) {
  static const luaL_Reg conn_methods[] = {
    {"query", conn_query},
    {"exec", conn_exec},
    {"copy_in", conn_copy_in},
    {"set_timeout", conn_set_timeout},
    {"status", conn_status},
    {"close", conn_close},
    {"_transaction_block", conn_transaction_block},
    {NULL, NULL},
  };
  static const luaL_Reg conn_meta[] = {
    {"__gc", conn_gc},
    {"__close", conn_gc},
    {"__tostring", conn_tostring},
    {NULL, NULL},
  };
  if (luaL_newmetatable(L, CONN_MT)) {
    luaL_setfuncs(L, conn_meta, 0);
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, RESULT_MT)) {
    lua_pushcfunction(L, result_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

int luaopen_mc_pg_native(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"connect", pg_connect},
    {"parse_array", mc_pg_parse_array},
    {NULL, NULL},
  };
  make_metatables(L);
  luaL_requiref(L, "mc.json", luaopen_mc_json, 0);
  lua_getfield(L, -1, "encode");
  lua_setfield(L, LUA_REGISTRYINDEX, ENCODE_KEY);
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, DECODERS_KEY);
  lua_setfield(L, -2, "decoders");
  luaL_getmetatable(L, CONN_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "methods"); /* the Lua half adds transaction() */
  lua_pop(L, 1);
  return 1;
}
