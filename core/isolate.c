/* isolate.c -- mc.isolate: a separate Lua state for untrusted (tenant) code.
 *
 * Each isolate is its own lua_State with a limiting allocator (memory cap), only
 * base, string, table, math, utf8 and coroutine opened, and no way to reach
 * files, the OS, bytecode, the debug library or the garbage collector. A count
 * hook is armed once at creation on the main thread, so every coroutine inherits
 * it, and is never removed. Each exec/call gets a fresh instruction budget and
 * wall-clock deadline, unless iso:arm set one for a whole sequence of them. The
 * hook counts per thread, so a coroutine that ends before HOOK_STEP
 * instructions would never be counted: coroutine.create/wrap charge HOOK_STEP
 * up front. Once the budget or the deadline runs out the hook raises on every instruction
 * (count 1), so a pcall inside the script cannot swallow it for long: the next
 * instruction after the pcall raises again. Between calls the hook stays in that
 * state, so no script code runs outside a call. Lua runs __gc finalizers with
 * hooks off, so setmetatable refuses a metatable with __gc. The hook cannot
 * interrupt a C call either: the library functions that can loop inside one
 * (pattern matching, string.rep, table shifts) are guarded in isolate_lib.c.
 *
 * Values cross by deep copy in C: nil, booleans, numbers (integer/float kept),
 * strings, mc.null (a NULL light userdata) and tables of these up to MAX_DEPTH
 * levels; a table reached twice (a cycle or a shared sub-table) is refused, so a
 * small value cannot expand into an exponential copy. Metatables are not copied. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "host.h"
#include "isolate.h"
#include "options.h"

#define ISOLATE_MT "mc.isolate"
#define MAX_DEPTH 32
#define HOOK_STEP 1000 /* instructions between budget checks */
#define MAX_ERR 1024   /* longest error message handed back */
#define MIN_MEMORY (256 * 1024)
#define MAX_TIMEOUT 86400.0 /* seconds: a day bounds any budget */

enum trip { TRIP_NONE, TRIP_IDLE, TRIP_BUDGET, TRIP_TIMEOUT };

typedef struct isolate {
  lua_State *L;           /* NULL once closed */
  size_t used, limit;     /* bytes */
  bool mem_refused;       /* the allocator said no during the current run */
  long long instructions; /* budget per run */
  double timeout;         /* seconds per run */
  bool armed;             /* iso:arm set left and deadline for every run from now */
  long long left;         /* instructions left in the current run */
  double deadline;        /* CLOCK_MONOTONIC seconds */
  enum trip tripped;
} isolate;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- allocator and hook -------------------------------------------------- */

static void count_hook(lua_State *L, lua_Debug *ar);

/* A refusal costs a full (emergency) collection first, so a script that catches
 * memory errors in a loop spends milliseconds per instruction and the hook, every
 * HOOK_STEP instructions, would see the deadline late (1.2 s for 0.5 s under
 * ASan). Past the deadline a refusal trips the run and the main thread's next
 * instruction raises (lua_sethook is safe anywhere: lua.c calls it from a signal
 * handler); a coroutine's own hook follows within HOOK_STEP. */
static void refused(isolate *iso) {
  iso->mem_refused = true;
  if (iso->tripped != TRIP_NONE || iso->L == NULL || now() <= iso->deadline) return;
  iso->tripped = TRIP_TIMEOUT;
  lua_sethook(iso->L, count_hook, LUA_MASKCOUNT, 1);
}

/* lua_Alloc with a cap. Shrinking and freeing never fail (Lua relies on it);
 * when ptr is NULL, osize is a type tag, not a size. */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  isolate *iso = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    iso->used -= old;
    return NULL;
  }
  if (nsize > old && (nsize - old > iso->limit || iso->used + (nsize - old) > iso->limit)) {
    refused(iso);
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p == NULL) {
    if (nsize <= old) return ptr; /* a failed shrink keeps the block */
    refused(iso);
    return NULL;
  }
  iso->used = iso->used - old + nsize;
  return p;
}

static const char *trip_message(enum trip t) {
  switch (t) {
  case TRIP_BUDGET: return "instruction budget exceeded";
  case TRIP_TIMEOUT: return "timeout";
  default: return "isolate is not running";
  }
}

/* Takes n instructions from the budget and checks the deadline; false once
 * either ran out (iso->tripped says which) or the isolate is not running. */
static bool charge(isolate *iso, long long n) {
  if (iso->tripped != TRIP_NONE) return false;
  iso->left -= n;
  if (iso->left <= 0) iso->tripped = TRIP_BUDGET;
  else if (now() > iso->deadline) iso->tripped = TRIP_TIMEOUT;
  return iso->tripped == TRIP_NONE;
}

/* From now on every instruction raises, on this thread and the main one. */
static int trip(lua_State *L, isolate *iso) {
  lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
  if (iso->L != NULL && iso->L != L) lua_sethook(iso->L, count_hook, LUA_MASKCOUNT, 1);
  lua_pushstring(L, trip_message(iso->tripped));
  return lua_error(L);
}

static isolate *isolate_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

/* Runs every HOOK_STEP instructions on each thread of the isolate (count 1 once
 * tripped). The allocator's userdata is the isolate. */
static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  isolate *iso = isolate_of(L);
  int counted = lua_gethookcount(L);
  if (!charge(iso, counted)) {
    trip(L, iso);
    return;
  }
  if (counted != HOOK_STEP) lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
}

/* Starts a run: a fresh budget and deadline, or what is left of the armed
 * ones. False (iso->tripped says why) when the armed ones are spent. */
static bool begin_run(isolate *iso) {
  if (!iso->armed) {
    iso->left = iso->instructions;
    iso->deadline = now() + iso->timeout;
  }
  iso->tripped = TRIP_NONE;
  iso->mem_refused = false;
  if (!charge(iso, 0)) return false;
  lua_sethook(iso->L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
  return true;
}

static void disarm(isolate *iso) {
  iso->tripped = TRIP_IDLE;
  lua_sethook(iso->L, count_hook, LUA_MASKCOUNT, 1);
}

/* ---- the isolate's own library ------------------------------------------- */

/* load(chunk [, chunkname [, mode [, env]]]): text only; env defaults to the
 * isolate's globals, as stock load does. A reader function is not accepted. */
static int iso_load(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  if (s == NULL || lua_type(L, 1) != LUA_TSTRING)
    return luaL_argerror(L, 1, "string expected (reader functions are not supported)");
  const char *name = luaL_optstring(L, 2, s);
  luaL_optstring(L, 3, "t"); /* accepted for compatibility; always text */
  bool has_env = !lua_isnone(L, 4);
  if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (has_env) {
    lua_pushvalue(L, 4);
    if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);
  }
  return 1;
}

/* setmetatable(t, mt) refusing a metatable with __gc: Lua runs finalizers with
 * hooks off (lgc.c, GCTM), so neither the budget nor the deadline could stop a
 * looping one, and an object is marked for finalization only when its
 * metatable has __gc at this moment. Upvalue 1 is the stock setmetatable. */
static int iso_setmetatable(lua_State *L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_argerror(L, 2, "__gc metamethods are not allowed");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* coroutine.create and coroutine.wrap (the original is upvalue 1): a new thread
 * starts its own count, so it is charged the most it could run uncounted. */
static int iso_new_coroutine(lua_State *L) {
  isolate *iso = isolate_of(L);
  if (!charge(iso, HOOK_STEP)) return trip(L, iso);
  return isolate_call_original(L);
}

static void remove_global(lua_State *L, const char *name) {
  lua_pushnil(L);
  lua_setglobal(L, name);
}

/* Runs protected inside the new state: libraries, removals, the string lock. */
static int isolate_init(lua_State *L) {
  static const luaL_Reg libs[] = {
    {LUA_GNAME, luaopen_base},
    {LUA_STRLIBNAME, luaopen_string},
    {LUA_TABLIBNAME, luaopen_table},
    {LUA_MATHLIBNAME, luaopen_math},
    {LUA_UTF8LIBNAME, luaopen_utf8},
    {LUA_COLIBNAME, luaopen_coroutine},
    {NULL, NULL},
  };
  for (const luaL_Reg *lib = libs; lib->func != NULL; lib++) {
    luaL_requiref(L, lib->name, lib->func, 1);
    lua_pop(L, 1);
  }
  static const char *const removed[] = {"dofile",         "loadfile", "require",
                                        "collectgarbage", "print",    NULL};
  for (const char *const *r = removed; *r != NULL; r++) remove_global(L, *r);
  lua_pushcfunction(L, iso_load);
  lua_setglobal(L, "load");
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, iso_setmetatable, 1);
  lua_setglobal(L, "setmetatable");
  lua_getglobal(L, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  isolate_guard_libs(L);
  isolate_wrap(L, LUA_COLIBNAME, "create", iso_new_coroutine);
  isolate_wrap(L, LUA_COLIBNAME, "wrap", iso_new_coroutine);
  /* getmetatable("") answers false, so the shared string metatable stays put */
  lua_pushliteral(L, "");
  if (lua_getmetatable(L, -1)) {
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  return 0;
}

/* ---- copying ------------------------------------------------------------- */

/* One copy between two states. The source is only read with calls that cannot
 * raise or allocate in it (no lua_tolstring on numbers, lua_next for traversal);
 * the destination may raise (memory), so a copy into an isolate runs protected
 * in it. The seen table (in dst) holds the source tables already copied. */
typedef struct copy {
  lua_State *src, *dst;
  int seen;     /* dst index of the seen table */
  int failed;   /* which value of a range was refused */
  char err[96]; /* why; the copy stops there */
} copy;

static bool copy_value(copy *c, int idx, int depth);

static bool refuse(copy *c, const char *fmt, const char *what) {
  snprintf(c->err, sizeof c->err, fmt, what);
  return false;
}

static bool copy_table(copy *c, int idx, int depth) {
  lua_State *src = c->src, *dst = c->dst;
  if (depth >= MAX_DEPTH) return refuse(c, "%s", "table nested deeper than 32 levels");
  lua_pushlightuserdata(dst, (void *)lua_topointer(src, idx));
  if (lua_rawget(dst, c->seen) != LUA_TNIL) return refuse(c, "%s", "cyclic or shared table");
  lua_pop(dst, 1);
  lua_pushlightuserdata(dst, (void *)lua_topointer(src, idx));
  lua_pushboolean(dst, 1);
  lua_rawset(dst, c->seen);
  if (!lua_checkstack(src, 3) || !lua_checkstack(dst, 4))
    return refuse(c, "%s", "not enough stack to copy");
  lua_newtable(dst);
  lua_pushnil(src);
  while (lua_next(src, idx) != 0) {
    int key = lua_gettop(src) - 1;
    int kt = lua_type(src, key);
    if (kt == LUA_TTABLE || kt == LUA_TFUNCTION || kt == LUA_TUSERDATA || kt == LUA_TTHREAD ||
        (kt == LUA_TLIGHTUSERDATA && lua_touserdata(src, key) != NULL)) {
      lua_pop(src, 2);
      return refuse(c, "cannot copy a %s key", lua_typename(src, kt));
    }
    if (!copy_value(c, key, depth + 1) || !copy_value(c, key + 1, depth + 1)) {
      lua_pop(src, 2);
      return false;
    }
    lua_rawset(dst, -3);
    lua_pop(src, 1); /* keep the key for lua_next */
  }
  return true;
}

/* Pushes onto dst a copy of src's value at idx (an absolute index). */
static bool copy_value(copy *c, int idx, int depth) {
  lua_State *src = c->src, *dst = c->dst;
  switch (lua_type(src, idx)) {
  case LUA_TNIL: lua_pushnil(dst); return true;
  case LUA_TBOOLEAN: lua_pushboolean(dst, lua_toboolean(src, idx)); return true;
  case LUA_TNUMBER:
    if (lua_isinteger(src, idx)) lua_pushinteger(dst, lua_tointeger(src, idx));
    else lua_pushnumber(dst, lua_tonumber(src, idx));
    return true;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(src, idx, &len);
    lua_pushlstring(dst, s, len);
    return true;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(src, idx) != NULL)
      return refuse(c, "cannot copy a %s value", "light userdata");
    lua_pushlightuserdata(dst, NULL); /* mc.null */
    return true;
  case LUA_TTABLE: return copy_table(c, idx, depth);
  default: return refuse(c, "cannot copy a %s value", lua_typename(src, lua_type(src, idx)));
  }
}

/* Copies src's values at first..last onto dst's stack. Returns false with
 * c->err and c->failed (1-based position in the range) on a refused value;
 * dst's stack is then as before. May raise in dst (memory). */
static bool copy_range(copy *c, int first, int last) {
  int top = lua_gettop(c->dst);
  luaL_checkstack(c->dst, last - first + 8, "too many values to copy");
  lua_newtable(c->dst);
  c->seen = lua_gettop(c->dst);
  c->err[0] = '\0';
  for (int i = first; i <= last; i++) {
    int before = lua_gettop(c->dst);
    if (!copy_value(c, i, 0)) {
      c->failed = i - first + 1;
      lua_settop(c->dst, top);
      return false;
    }
    lua_settop(c->dst, before + 1); /* the copy only */
  }
  lua_remove(c->dst, c->seen);
  return true;
}

/* ---- running in the isolate ---------------------------------------------- */

typedef struct run {
  lua_State *host;
  isolate *iso;
  int first_arg, last_arg; /* host indices of values to copy in */
  const char *source;
  size_t source_len;
  const char *chunkname;
  const char *name;  /* exec: global to store into; call: function */
  const char *table; /* call: global table */
  bool refused;      /* a host value could not cross: err says why */
  char err[160];
} run;

/* Inside the isolate, protected: load the chunk, run it, maybe store result 1. */
static int run_exec(lua_State *L) {
  run *r = lua_touserdata(L, 1);
  lua_settop(L, 0);
  if (luaL_loadbufferx(L, r->source, r->source_len, r->chunkname, "t") != LUA_OK)
    return lua_error(L);
  lua_call(L, 0, r->name ? 1 : 0);
  if (r->name) lua_setglobal(L, r->name);
  return 0;
}

/* Inside the isolate, protected: find table.fn, copy the host's args, call. */
static int run_call(lua_State *L) {
  run *r = lua_touserdata(L, 1);
  lua_settop(L, 0);
  if (lua_getglobal(L, r->table) != LUA_TTABLE)
    return luaL_error(L, "isolate: no table '%s'", r->table);
  if (lua_getfield(L, 1, r->name) != LUA_TFUNCTION)
    return luaL_error(L, "isolate: no function '%s.%s'", r->table, r->name);
  lua_remove(L, 1);
  copy c = {.src = r->host, .dst = L};
  if (!copy_range(&c, r->first_arg, r->last_arg)) {
    snprintf(r->err, sizeof r->err, "argument %d: %s", c.failed, c.err);
    r->refused = true;
    return 0;
  }
  lua_call(L, r->last_arg - r->first_arg + 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Inside the isolate, protected: copy one host value in as a global. */
static int run_set(lua_State *L) {
  run *r = lua_touserdata(L, 1);
  lua_settop(L, 0);
  copy c = {.src = r->host, .dst = L};
  if (!copy_range(&c, r->first_arg, r->first_arg)) {
    snprintf(r->err, sizeof r->err, "%s", c.err);
    r->refused = true;
    return 0;
  }
  lua_setglobal(L, r->name);
  return 0;
}

/* Pushes onto the host the short error for a failed run; pops the isolate's
 * error object. */
static void push_run_error(lua_State *H, isolate *iso, int status) {
  lua_State *I = iso->L;
  if (iso->tripped == TRIP_BUDGET || iso->tripped == TRIP_TIMEOUT) {
    lua_pushstring(H, trip_message(iso->tripped));
  } else if (status == LUA_ERRMEM) {
    lua_pushliteral(H, "memory limit exceeded");
  } else if (lua_type(I, -1) == LUA_TSTRING) {
    size_t len;
    const char *msg = lua_tolstring(I, -1, &len);
    if (iso->mem_refused && strstr(msg, "not enough memory") != NULL)
      lua_pushliteral(H, "memory limit exceeded");
    else if (len > MAX_ERR) {
      lua_pushlstring(H, msg, MAX_ERR);
      lua_pushliteral(H, "...");
      lua_concat(H, 2);
    } else lua_pushlstring(H, msg, len);
  } else if (lua_type(I, -1) == LUA_TNUMBER) {
    if (lua_isinteger(I, -1)) lua_pushfstring(H, "%I", (LUAI_UACINT)lua_tointeger(I, -1));
    else lua_pushfstring(H, "%f", (LUAI_UACNUMBER)lua_tonumber(I, -1));
  } else {
    lua_pushfstring(H, "(error object is a %s value)", luaL_typename(I, -1));
  }
  lua_pop(I, 1);
}

/* Runs fn(r) in the isolate under a fresh budget (or the armed one). On success leaves fn's
 * results on the isolate's stack and returns how many; on failure pushes
 * nil, err onto the host and returns -1. */
static int run_protected(lua_State *H, isolate *iso, lua_CFunction fn, run *r) {
  lua_State *I = iso->L;
  lua_settop(I, 0);
  if (!lua_checkstack(I, 4)) {
    luaL_pushfail(H);
    lua_pushliteral(H, "memory limit exceeded");
    return -1;
  }
  if (!begin_run(iso)) {
    luaL_pushfail(H);
    lua_pushstring(H, trip_message(iso->tripped));
    iso->tripped = TRIP_IDLE;
    return -1;
  }
  lua_pushcfunction(I, fn);
  lua_pushlightuserdata(I, r);
  int status = lua_pcall(I, 1, LUA_MULTRET, 0);
  if (status != LUA_OK) {
    luaL_pushfail(H);
    push_run_error(H, iso, status);
    disarm(iso);
    lua_settop(I, 0);
    return -1;
  }
  disarm(iso);
  if (r->refused) {
    lua_settop(I, 0);
    luaL_error(H, "isolate: %s", r->err); /* a host value that cannot cross: misuse */
  }
  return lua_gettop(I);
}

/* ---- mc.isolate ---------------------------------------------------------- */

static isolate *check_isolate(lua_State *L) {
  return luaL_checkudata(L, 1, ISOLATE_MT);
}

static int closed(lua_State *L) {
  luaL_pushfail(L);
  lua_pushliteral(L, "closed");
  return 2;
}

static void check_option_names(lua_State *L, int idx, const char *who, bool memory) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (k == NULL ||
        ((!memory || strcmp(k, "memory")) && strcmp(k, "instructions") && strcmp(k, "timeout")))
      luaL_error(L, "%s: unknown option %s", who, k ? k : luaL_typename(L, -2));
    lua_pop(L, 1);
  }
}

/* isolate.new{memory =, instructions =, timeout =} -> isolate | nil, err.
 * The userdata exists before the state, so __gc always owns what was made. */
static int isolate_new(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  check_option_names(L, 1, "isolate.new", true);
  mc_options o = {L, 1, "isolate.new"};
  long long memory = mc_opt_integer(&o, "memory", 8 * 1024 * 1024, MIN_MEMORY, LUA_MAXINTEGER);
  long long instructions = mc_opt_integer(&o, "instructions", 10000000, 1, LUA_MAXINTEGER);
  double timeout = mc_opt_seconds(&o, "timeout", 2.0, MAX_TIMEOUT);
  isolate *iso = lua_newuserdatauv(L, sizeof *iso, 0);
  memset(iso, 0, sizeof *iso);
  iso->limit = (size_t)memory;
  iso->instructions = instructions;
  iso->timeout = timeout;
  iso->tripped = TRIP_IDLE;
  luaL_setmetatable(L, ISOLATE_MT);
  iso->L = lua_newstate(limited_alloc, iso);
  if (iso->L == NULL) goto oom;
  disarm(iso); /* the hook, armed before any code can run, never removed */
  lua_pushcfunction(iso->L, isolate_init);
  int status = lua_pcall(iso->L, 0, 0, 0);
  if (status != LUA_OK) {
    lua_close(iso->L);
    iso->L = NULL;
    if (status == LUA_ERRMEM) goto oom;
    return luaL_error(L, "isolate.new: cannot open libraries");
  }
  return 1;
oom:
  luaL_pushfail(L);
  lua_pushliteral(L, "memory limit exceeded");
  return 2;
}

/* Uses "@name" unless the name already says how to show itself. */
static const char *chunk_name(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  if (name[0] == '@' || name[0] == '=') return name;
  return lua_pushfstring(L, "@%s", name);
}

/* iso:exec(source, chunkname [, global_name]) -> true | nil, err */
static int isolate_exec(lua_State *L) {
  isolate *iso = check_isolate(L);
  run r = {.host = L, .iso = iso};
  r.source = luaL_checklstring(L, 2, &r.source_len);
  r.chunkname = chunk_name(L, 3);
  r.name = luaL_optstring(L, 4, NULL);
  if (iso->L == NULL) return closed(L);
  if (run_protected(L, iso, run_exec, &r) < 0) return 2;
  lua_settop(iso->L, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* Copies the isolate's results (its whole stack) to the host after `true`. */
static int push_results(lua_State *L, isolate *iso, int n) {
  lua_State *I = iso->L;
  luaL_checkstack(L, n + 8, "too many results");
  lua_pushboolean(L, 1);
  int base = lua_gettop(L);
  copy c = {.src = I, .dst = L};
  bool ok = copy_range(&c, 1, n);
  lua_settop(I, 0);
  if (!ok) {
    lua_settop(L, base - 1);
    luaL_pushfail(L);
    lua_pushfstring(L, "result %d: %s", c.failed, c.err);
    return 2;
  }
  return n + 1;
}

/* iso:call(global_table, fname, ...) -> true, results... | nil, err */
static int isolate_call(lua_State *L) {
  isolate *iso = check_isolate(L);
  run r = {.host = L, .iso = iso};
  r.table = luaL_checkstring(L, 2);
  r.name = luaL_checkstring(L, 3);
  r.first_arg = 4;
  r.last_arg = lua_gettop(L);
  if (iso->L == NULL) return closed(L);
  luaL_checkstack(L, 2 * MAX_DEPTH + 8, "isolate: call");
  int n = run_protected(L, iso, run_call, &r);
  if (n < 0) return 2;
  return push_results(L, iso, n);
}

/* iso:set(global_name, value) -> true | nil, err */
static int isolate_set(lua_State *L) {
  isolate *iso = check_isolate(L);
  run r = {.host = L, .iso = iso};
  r.name = luaL_checkstring(L, 2);
  luaL_checkany(L, 3);
  r.first_arg = r.last_arg = 3;
  if (iso->L == NULL) return closed(L);
  luaL_checkstack(L, 2 * MAX_DEPTH + 8, "isolate: set");
  if (run_protected(L, iso, run_set, &r) < 0) return 2;
  lua_settop(iso->L, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* iso:arm{instructions =, timeout =} -> true: one budget and one deadline,
 * starting now, that every following exec/call/set draws from instead of a
 * fresh one each (defaults: the isolate's own). Arming again starts anew. */
static int isolate_arm(lua_State *L) {
  isolate *iso = check_isolate(L);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_newtable(L);
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  check_option_names(L, 2, "isolate.arm", false);
  mc_options o = {L, 2, "isolate.arm"};
  long long instructions = mc_opt_integer(&o, "instructions", iso->instructions, 1, LUA_MAXINTEGER);
  double timeout = mc_opt_seconds(&o, "timeout", iso->timeout, MAX_TIMEOUT);
  if (iso->L == NULL) return closed(L);
  iso->armed = true;
  iso->left = instructions;
  iso->deadline = now() + timeout;
  lua_pushboolean(L, 1);
  return 1;
}

/* iso:memory() -> bytes in use */
static int isolate_memory(lua_State *L) {
  isolate *iso = check_isolate(L);
  if (iso->L == NULL) return closed(L);
  lua_pushinteger(L, (lua_Integer)iso->used);
  return 1;
}

/* iso:close(), also __gc and __close: idempotent. No script finalizer can run
 * here: setmetatable refuses __gc. */
static int isolate_close(lua_State *L) {
  isolate *iso = check_isolate(L);
  if (iso->L != NULL) {
    disarm(iso);
    lua_close(iso->L);
    iso->L = NULL;
  }
  return 0;
}

static int isolate_tostring(lua_State *L) {
  isolate *iso = check_isolate(L);
  if (iso->L == NULL) lua_pushliteral(L, "mc.isolate (closed)");
  else lua_pushfstring(L, "mc.isolate (%p)", (void *)iso);
  return 1;
}

int luaopen_mc_isolate(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"exec", isolate_exec}, {"call", isolate_call},     {"set", isolate_set},
    {"arm", isolate_arm},   {"memory", isolate_memory}, {"close", isolate_close},
    {NULL, NULL},
  };
  static const luaL_Reg meta[] = {
    {"__gc", isolate_close},
    {"__close", isolate_close},
    {"__tostring", isolate_tostring},
    {NULL, NULL},
  };
  static const luaL_Reg funcs[] = {
    {"new", isolate_new},
    {NULL, NULL},
  };
  luaL_newmetatable(L, ISOLATE_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
