/* host.h -- the embedding: building a Lua state with every mc.* module, and
 * running Lua code under lua_pcall with a traceback. */
#ifndef MC_HOST_H
#define MC_HOST_H

#include <signal.h>

#include <lua.h>

#define MC_VERSION "0.1.0"

/* Process-wide facts fixed at boot, before any thread starts; read-only after. */
typedef struct mc_boot {
  const char *root; /* MC_ROOT: the project, the directory that holds bin/ */
  const char *exe;  /* absolute path of the running binary */
} mc_boot;

int mc_boot_init(mc_boot *b, const char *argv0);
void mc_boot_free(mc_boot *b);

/* A fresh state with the standard libraries, the global mc (core/lua/mc/init.lua) and
 * every mc.* module preloadable; NULL on allocation failure. Caller owns it. */
lua_State *mc_state_new(const mc_boot *b);

/* lua_pcall with a traceback handler: the error object on failure is the message
 * with its traceback (a string). Same return codes as lua_pcall. */
int mc_pcall(lua_State *L, int nargs, int nresults);

/* Copies s into out (cap bytes, NUL included) as the inside of a logfmt quoted
 * value, cut to fit; returns out. Quotes, backslashes and control characters
 * are escaped, so that a value (a traceback, a client's path) never breaks its
 * line: the one escaping every log line goes through (mc.log uses it too, as
 * mc.host.log_escape). */
const char *mc_log_escape(const char *s, char *out, size_t cap);

/* Writes at=error msg="msg" error="err" on stdout, both escaped: one line
 * however many lines err (a traceback) has. */
void mc_log_error(const char *msg, const char *err);

/* SIGTERM, SIGINT and SIGHUP: the signals a long-running process (web, worker,
 * clock) blocks in every thread and waits for as commands (stop, stop, reload). */
void mc_control_signals(sigset_t *set);

/* mc.null: the host's one null -- JSON null, SQL NULL, Redis nil -- as OpenResty
 * has ngx.null. It is a light userdata holding NULL because lua-cjson's null is
 * exactly that: cjson encodes it as null and decodes null to it, so mc.null,
 * mc.json.null, mc.pg.null and mc.redis.null are one value under four names. */
#define mc_pushnull(L) lua_pushlightuserdata((L), NULL)
#define mc_isnull(L, i) (lua_islightuserdata((L), (i)) && lua_touserdata((L), (i)) == NULL)

/* Module openers, one per core/<name>.c file. */
int luaopen_mc_host(lua_State *L);
int luaopen_mc_json(lua_State *L);
int luaopen_mc_url(lua_State *L);
int luaopen_mc_pg_native(lua_State *L);    /* under mc.pg (core/lua/mc/pg.lua) */
int luaopen_mc_redis_native(lua_State *L); /* under mc.redis (core/lua/mc/redis.lua) */
int luaopen_mc_http_native(lua_State *L);
int luaopen_mc_crypto_native(lua_State *L);
int luaopen_mc_web_native(lua_State *L);
int luaopen_mc_worker_native(lua_State *L);
int luaopen_mc_isolate(lua_State *L);      /* core/isolate.c: tenant code in its own state */
int luaopen_mc_readline(lua_State *L);     /* core/readline.c: line editing for the console */
int luaopen_mc_sched_native(lua_State *L); /* under mc.sched (core/lua/mc/sched.lua) */

/* core/sched.c: yielding a network wait to the scheduler of a job's coroutine.
 * mc_sched_can_yield: L is a coroutine the scheduler runs and can yield here.
 * mc_sched_wait: yields (as `return mc_sched_wait(...)`) until fd is ready for
 * events (fd -1: none), deadline_ms (mc_sched_now_ms's clock; 0: none) passes or
 * the HTTP transfer named key (NULL: none) is done; then k(L, LUA_YIELD, ctx). */
struct pollfd;
int mc_sched_can_yield(lua_State *L);
int mc_sched_wait(lua_State *L, void *key, int fd, int events, double deadline_ms, lua_KContext ctx,
                  lua_KFunction k);
double mc_sched_now_ms(void);

/* core/http.c: waits up to timeout_ms for one of fds[0..n) and drives this state's
 * HTTP transfers meanwhile; pushes the key of each transfer that finished into the
 * table at done_idx. Returns poll()'s count (fds[].revents set), or -1 (errno). */
int mc_http_wait(lua_State *L, struct pollfd *fds, int n, int timeout_ms, int done_idx);

/* Debian's lua-cjson.h declares only luaopen_cjson; the library has both. */
int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

/* Lua sources under core/lua/mc/, embedded by tools/embed-lua. */
typedef struct mc_embedded {
  const char *name;      /* module name: "mc.log" */
  const char *chunkname; /* "@core/lua/mc/log.lua", for tracebacks */
  const char *src;
  size_t len;
} mc_embedded;

extern const mc_embedded mc_embedded_modules[]; /* ends with a NULL name */

#endif
