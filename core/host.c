/* host.c -- building Lua states for the host, and the mc.host module.
 *
 * Every process type (run, test, web, worker, ...) makes its states here, so
 * they all see the same modules: the embedded core/lua/mc/ sources and the C
 * modules through package.preload, then Debian's Lua 5.4 locations (so Debian's
 * Lua C modules such as busted's load too). Where the application's own modules
 * are is mc's business (core/lua/mc/init.lua), not the C host's. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <readline/readline.h>

#include "host.h"

/* ---- boot facts ---------------------------------------------------------- */

static char *parent_dir(const char *path) {
  char *copy = strdup(path);
  if (copy == NULL) return NULL;
  char *slash = strrchr(copy, '/');
  if (slash == NULL || slash == copy) slash = copy + 1;
  *slash = '\0';
  return copy;
}

/* Fills b from /proc/self/exe and MC_ROOT; -1 with a message on stderr if the
 * binary cannot find itself. b owns the strings (mc_boot_free). */
int mc_boot_init(mc_boot *b, const char *argv0) {
  char buf[PATH_MAX];
  b->exe = b->root = NULL;
  if (realpath("/proc/self/exe", buf) == NULL && realpath(argv0, buf) == NULL) {
    fprintf(stderr, "multiconnect: cannot locate own binary: %s\n", strerror(errno));
    return -1;
  }
  b->exe = strdup(buf);
  const char *env = getenv("MC_ROOT");
  if (env != NULL && *env != '\0') {
    b->root = realpath(env, NULL);
    if (b->root == NULL) {
      fprintf(stderr, "multiconnect: MC_ROOT=%s: %s\n", env, strerror(errno));
      return -1;
    }
  } else if (b->exe != NULL) {
    char *bindir = parent_dir(b->exe); /* .../bin */
    b->root = bindir ? parent_dir(bindir) : NULL;
    free(bindir);
  }
  if (b->exe == NULL || b->root == NULL) {
    fprintf(stderr, "multiconnect: out of memory\n");
    return -1;
  }
  return 0;
}

void mc_boot_free(mc_boot *b) {
  free((void *)b->exe);
  free((void *)b->root);
  b->exe = b->root = NULL;
}

/* ---- protected calls ----------------------------------------------------- */

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) { /* a non-string error object */
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int mc_pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs; /* the function's slot */
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

/* ---- state construction -------------------------------------------------- */

static const luaL_Reg c_modules[] = {
  {"mc.host", luaopen_mc_host},
  {"mc.json", luaopen_mc_json},
  {"mc.url", luaopen_mc_url},
  {"mc.pg_native", luaopen_mc_pg_native},
  {"mc.redis_native", luaopen_mc_redis_native},
  {"mc.http_native", luaopen_mc_http_native},
  {"mc.crypto_native", luaopen_mc_crypto_native},
  {"mc.web_native", luaopen_mc_web_native},
  {"mc.worker_native", luaopen_mc_worker_native},
  {"mc.isolate", luaopen_mc_isolate},
  {"mc.readline", luaopen_mc_readline},
  {"mc.sched_native", luaopen_mc_sched_native},
  {"cjson", luaopen_cjson},
  {"cjson.safe", luaopen_cjson_safe},
  {NULL, NULL},
};

/* package.preload loader for an embedded source; upvalue 1 is its index. */
static int load_embedded(lua_State *L) {
  const mc_embedded *m = &mc_embedded_modules[lua_tointeger(L, lua_upvalueindex(1))];
  if (luaL_loadbufferx(L, m->src, m->len, m->chunkname, "t") != LUA_OK) return lua_error(L);
  lua_pushstring(L, m->name);
  lua_pushstring(L, m->chunkname + 1);
  lua_call(L, 2, 1);
  return 1;
}

static void preload_modules(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *r = c_modules; r->name != NULL; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  for (lua_Integer i = 0; mc_embedded_modules[i].name != NULL; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, mc_embedded_modules[i].name);
  }
  lua_pop(L, 1);
}

static int state_init(lua_State *L) {
  const mc_boot *b = lua_touserdata(L, 1);
  luaL_openlibs(L);
  lua_pushlightuserdata(L, (void *)b);
  lua_setfield(L, LUA_REGISTRYINDEX, "mc.boot");
  preload_modules(L);
  lua_getglobal(L, "require"); /* the one global the host adds: mc, as ngx in OpenResty */
  lua_pushliteral(L, "mc");
  lua_call(L, 1, 1);
  lua_setglobal(L, "mc");
  return 0;
}

lua_State *mc_state_new(const mc_boot *b) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "multiconnect: cannot create Lua state: out of memory\n");
    return NULL;
  }
  lua_pushcfunction(L, state_init);
  lua_pushlightuserdata(L, (void *)b);
  if (mc_pcall(L, 1, 0) != LUA_OK) {
    fprintf(stderr, "multiconnect: boot failed: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  return L;
}

/* ---- mc.host ------------------------------------------------------------- */

static const mc_boot *boot_of(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "mc.boot");
  const mc_boot *b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (b == NULL) luaL_error(L, "mc.host: state was not made by mc_state_new");
  return b;
}

static void set_str(lua_State *L, const char *key, const char *value) {
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

/* mc.host.versions() -> {lua=, libmicrohttpd=, libpq=, hiredis=, libcurl=, ...}:
 * the libraries this process runs with (run-time versions where they expose one). */
static int host_versions(lua_State *L) {
  char buf[64];
  lua_createtable(L, 0, 8);
  set_str(L, "multiconnect", MC_VERSION);
  set_str(L, "lua", LUA_RELEASE);
  set_str(L, "libmicrohttpd", MHD_get_version());
  int pq = PQlibVersion();
  snprintf(buf, sizeof buf, "%d.%d", pq / 10000, pq % 10000);
  set_str(L, "libpq", buf);
  snprintf(buf, sizeof buf, "%d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
  set_str(L, "hiredis", buf);
  set_str(L, "libcurl", curl_version_info(CURLVERSION_NOW)->version);
  set_str(L, "openssl", OpenSSL_version(OPENSSL_VERSION));
  set_str(L, "readline", rl_library_version);
  return 1;
}

/* mc.host.now() -> seconds (float) on the monotonic clock: for durations. */
static int host_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* mc.host.time() -> seconds since the epoch (float): wall-clock time stamps. */
static int host_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* mc.host.pid(), mc.host.hostname() */
static int host_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int host_hostname(lua_State *L) {
  char name[256];
  if (gethostname(name, sizeof name) != 0) strcpy(name, "localhost");
  name[sizeof name - 1] = '\0';
  lua_pushstring(L, name);
  return 1;
}

/* mc.host.sleep(seconds) */
static int host_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (s > 0) {
    struct timespec ts = {(time_t)s, (long)((s - (lua_Number)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  }
  return 0;
}

/* The signals every long-running process takes as commands; see host.h. */
void mc_control_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGHUP);
}

/* mc.host.block_signals(): blocks SIGTERM, SIGINT and SIGHUP in the calling thread
 * (and the threads it starts afterwards), so that they wait, pending, for
 * wait_signal instead of ending the process. */
static int host_block_signals(lua_State *L) {
  sigset_t set;
  mc_control_signals(&set);
  int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
  if (rc != 0) return luaL_error(L, "block_signals: %s", strerror(rc));
  return 0;
}

/* mc.host.wait_signal(seconds) -> "TERM" | "INT" | "HUP" | nil (timed out).
 * Raises unless block_signals ran first: an unblocked SIGTERM would kill the
 * process rather than be waited for. */
static int host_wait_signal(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  sigset_t set, blocked;
  mc_control_signals(&set);
  pthread_sigmask(SIG_BLOCK, NULL, &blocked);
  if (!sigismember(&blocked, SIGTERM))
    return luaL_error(L, "wait_signal: call block_signals first");
  if (!(s > 0)) s = 0;
  if (s > 86400) s = 86400;
  struct timespec ts = {(time_t)s, (long)((s - (lua_Number)(time_t)s) * 1e9)};
  int sig;
  do {
    sig = sigtimedwait(&set, NULL, &ts);
  } while (sig < 0 && errno == EINTR);
  if (sig == SIGTERM) lua_pushliteral(L, "TERM");
  else if (sig == SIGINT) lua_pushliteral(L, "INT");
  else if (sig == SIGHUP) lua_pushliteral(L, "HUP");
  else lua_pushnil(L);
  return 1;
}

/* ---- logfmt escaping ------------------------------------------------------ */

/* The escape of one byte into e: 1 to 4 characters, returned as the count. */
static size_t escape_byte(unsigned char ch, char e[4]) {
  static const char hex[] = "0123456789abcdef";
  if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\t') {
    e[0] = '\\';
    e[1] = ch == '\n' ? 'n' : ch == '\t' ? 't' : (char)ch;
    return 2;
  }
  if (ch < 0x20 || ch == 0x7f) {
    e[0] = '\\', e[1] = 'x', e[2] = hex[ch >> 4], e[3] = hex[ch & 15];
    return 4;
  }
  e[0] = (char)ch;
  return 1;
}

const char *mc_log_escape(const char *s, char *out, size_t cap) {
  size_t j = 0;
  for (; s != NULL && *s != '\0'; s++) {
    char e[4];
    size_t k = escape_byte((unsigned char)*s, e);
    if (j + k >= cap) break;
    memcpy(out + j, e, k);
    j += k;
  }
  out[j] = '\0';
  return out;
}

/* The frames of a Lua traceback on one line, readable: "\n\t" between frames
 * becomes " <- ", so a log line stays one line without a wall of escapes. */
static void compact_frames(const char *in, char *out, size_t cap) {
  size_t j = 0;
  for (; *in != '\0' && j + 5 < cap; in++) {
    if (*in == '\n') {
      memcpy(out + j, " <- ", 4);
      j += 4;
      while (in[1] == '\t') in++;
    } else if (*in != '\t') {
      out[j++] = *in;
    }
  }
  out[j] = '\0';
}

/* at=error msg="..." error="<the error's own text>" trace="<frames>": a load
 * error is read first for its file and line, so those come unescaped by the
 * traceback that lua_pcall's handler appended. */
void mc_log_error(const char *msg, const char *err) {
  static const char mark[] = "\nstack traceback:\n";
  char m[256], head[2048], e[4096], frames[4096], t[8192];
  if (err == NULL) err = "(no message)";
  const char *tb = strstr(err, mark);
  size_t n = tb ? (size_t)(tb - err) : strlen(err);
  if (n >= sizeof head) n = sizeof head - 1;
  memcpy(head, err, n);
  head[n] = '\0';
  t[0] = '\0';
  if (tb != NULL) {
    compact_frames(tb + sizeof mark - 1, frames, sizeof frames);
    mc_log_escape(frames, t, sizeof t);
  }
  /* one printf: other threads' lines must not land inside this one */
  printf("at=error msg=\"%s\" error=\"%s\"%s%s%s\n", mc_log_escape(msg, m, sizeof m),
         mc_log_escape(head, e, sizeof e), tb ? " trace=\"" : "", t, tb ? "\"" : "");
  fflush(stdout);
}

/* mc.host.log_escape(s) -> s as the inside of a logfmt quoted value (whole) */
static int host_log_escape(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++) {
    char e[4];
    size_t k = escape_byte((unsigned char)s[i], e);
    if (k == 1) luaL_addchar(&b, e[0]);
    else luaL_addlstring(&b, e, k);
  }
  luaL_pushresult(&b);
  return 1;
}

/* mc.host.cpus() -> the number of online processors */
static int host_cpus(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

int luaopen_mc_host(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"versions", host_versions},
    {"now", host_now},
    {"cpus", host_cpus},
    {"time", host_time},
    {"pid", host_pid},
    {"hostname", host_hostname},
    {"sleep", host_sleep},
    {"block_signals", host_block_signals},
    {"wait_signal", host_wait_signal},
    {"log_escape", host_log_escape},
    {NULL, NULL},
  };
  const mc_boot *b = boot_of(L);
  luaL_newlib(L, funcs);
  set_str(L, "version", MC_VERSION);
  set_str(L, "root", b->root);
  set_str(L, "exe", b->exe);
  return 1;
}
