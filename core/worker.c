/* worker.c -- mc.worker_native: the threads of `multiconnect worker`.
 *
 * N OS threads each loop: borrow an app state from an mc_pool (pool.c), call its
 * entry point once (run jobs, up to `inflight` at once in coroutines, until none
 * is left in flight, or wait briefly when there is none), give the state back.
 * Borrowing again after each round is what makes hot reload land between jobs: a
 * round that sees newer code stops fetching and finishes its jobs on the code
 * they started with. Each job in flight is published in a slot (inflight per
 * thread), which the main thread reads for the heartbeat and, at a shutdown
 * deadline, to push unfinished jobs back.
 *
 * The main thread (the caller of run) waits for signals and ticks: every tick it
 * calls opts.tick (heartbeat, scheduler, orphan recovery, in Lua) and checks the
 * folders of opts.watch for changes (watch.c). SIGTERM/SIGINT: stop fetching, wait for running jobs up to
 * the shutdown timeout, hand the unfinished ones to opts.requeue. SIGTSTP: quiet. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "host.h"
#include "options.h"
#include "pool.h"
#include "watch.h"

#define SLOT_KEEP 16384 /* a bigger slot buffer is given back when its job ends */

/* A job slot: the queue and payload of the job running in it, one after the
 * other in buf (kept and reused, so that a job costs no malloc here). */
typedef struct slot {
  char *buf;  /* queue then payload; owned here */
  size_t cap; /* of buf */
  size_t qlen, plen;
  int busy;       /* 0: the slot is free */
  double started; /* wall-clock epoch seconds */
} slot;

typedef struct worker {
  const mc_boot *boot;
  mc_pool pool;
  int concurrency;
  int inflight, nslots;     /* jobs in flight per thread; concurrency * inflight */
  const char *const *watch; /* folders whose edits reload the code; NULL: SIGHUP only */
  char identity[256];       /* hostname:pid:nonce, as Sidekiq names a process */
  double shutdown_timeout;
  atomic_int stopping, quiet, running; /* running: threads not yet finished */
  pthread_mutex_t mu;                  /* guards slots */
  slot *slots;
  pthread_t *threads;
} worker;

typedef struct thread_arg {
  worker *w;
  int index;
} thread_arg;

static const char WORKER_KEY = 0; /* registry: lightuserdata of the worker, per state */

static double wall_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* mc_state_builder: a state whose entry point is require("mc.worker").thread_entry(). */
static lua_State *build_state(void *ud, int *ref) {
  worker *w = ud;
  lua_State *L = mc_state_new(w->boot);
  if (L == NULL) return NULL;
  lua_pushlightuserdata(L, w);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &WORKER_KEY);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mc.worker");
  if (mc_pcall(L, 1, 1) != LUA_OK) goto fail;
  lua_getfield(L, -1, "thread_entry");
  if (mc_pcall(L, 0, 1) != LUA_OK) goto fail;
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  return L;
fail:
  mc_log_error("worker code failed to load", lua_tostring(L, -1));
  lua_close(L);
  return NULL;
}

static void *thread_main(void *p) {
  thread_arg *a = p;
  worker *w = a->w;
  while (!atomic_load(&w->stopping)) {
    mc_state st = mc_pool_acquire(&w->pool);
    lua_pushinteger(st.L, st.generation); /* for stale(): is newer code waiting? */
    lua_setfield(st.L, LUA_REGISTRYINDEX, "mc.worker.generation");
    lua_rawgeti(st.L, LUA_REGISTRYINDEX, st.entry_ref);
    lua_pushinteger(st.L, a->index + 1);
    if (mc_pcall(st.L, 1, 0) != LUA_OK) { /* the framework itself failed: log, pause */
      mc_log_error("worker loop failed", lua_tostring(st.L, -1));
      lua_settop(st.L, 0);
      mc_pool_release(&w->pool, st);
      struct timespec ts = {1, 0};
      nanosleep(&ts, NULL);
      continue;
    }
    lua_settop(st.L, 0);
    mc_pool_release(&w->pool, st);
  }
  atomic_fetch_sub(&w->running, 1);
  free(a);
  return NULL;
}

/* ---- called from the threads' Lua (through the registry's worker pointer) ---- */

static worker *worker_of(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &WORKER_KEY);
  worker *w = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (w == NULL) luaL_error(L, "mc.worker_native: not inside a worker");
  return w;
}

static int check_index(lua_State *L, worker *w) {
  lua_Integer i = luaL_checkinteger(L, 1);
  luaL_argcheck(L, i >= 1 && i <= w->nslots, 1, "no such job slot");
  return (int)i - 1;
}

static void slot_free(slot *s) {
  free(s->buf);
  memset(s, 0, sizeof *s);
}

/* set_current(slot, queue, payload): the job slot now holds (thread t's slots are
 * (t - 1) * inflight + 1 .. t * inflight) */
static int w_set_current(lua_State *L) {
  worker *w = worker_of(L);
  int i = check_index(L, w);
  size_t qlen, plen;
  const char *queue = luaL_checklstring(L, 2, &qlen);
  const char *payload = luaL_checklstring(L, 3, &plen);
  double started = wall_time();
  pthread_mutex_lock(&w->mu);
  slot *s = &w->slots[i];
  if (s->cap < qlen + plen + 1) { /* grown under the lock: the main thread reads buf */
    char *buf = realloc(s->buf, qlen + plen + 1);
    if (buf == NULL) {
      pthread_mutex_unlock(&w->mu);
      return luaL_error(L, "out of memory");
    }
    s->buf = buf;
    s->cap = qlen + plen + 1;
  }
  memcpy(s->buf, queue, qlen);
  memcpy(s->buf + qlen, payload, plen);
  s->qlen = qlen;
  s->plen = plen;
  s->busy = 1;
  s->started = started;
  pthread_mutex_unlock(&w->mu);
  return 0;
}

static int w_clear_current(lua_State *L) {
  worker *w = worker_of(L);
  int i = check_index(L, w);
  pthread_mutex_lock(&w->mu);
  slot *s = &w->slots[i];
  s->busy = 0;
  if (s->cap > SLOT_KEEP) slot_free(s); /* else the buffer stays for the slot's next job */
  pthread_mutex_unlock(&w->mu);
  return 0;
}

/* stale() -> true when this state's code has been replaced by a reload since it
 * was borrowed: a job fetched now should run on the new code instead. */
static int w_stale(lua_State *L) {
  worker *w = worker_of(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "mc.worker.generation");
  lua_Integer mine = lua_tointeger(L, -1);
  pthread_mutex_lock(&w->pool.mu);
  unsigned current = w->pool.generation;
  pthread_mutex_unlock(&w->pool.mu);
  lua_pushboolean(L, mine != 0 && (unsigned)mine != current);
  return 1;
}

/* identity() -> this process's name in Redis */
static int w_identity(lua_State *L) {
  lua_pushstring(L, worker_of(L)->identity);
  return 1;
}

/* state() -> "running" | "quiet" | "stopping" */
static int w_state(lua_State *L) {
  worker *w = worker_of(L);
  lua_pushstring(L, atomic_load(&w->stopping) ? "stopping"
                    : atomic_load(&w->quiet)  ? "quiet"
                                              : "running");
  return 1;
}

/* current() -> array of {index, queue, payload, started} for the busy slots.
 * Each slot is copied under the lock into Lua-owned memory (a scratch userdata
 * made before locking), so nothing that can raise runs while the lock is held. */
static int w_current(lua_State *L) {
  worker *w = worker_of(L);
  lua_newtable(L);
  for (int i = 0; i < w->nslots; i++) {
    pthread_mutex_lock(&w->mu);
    int busy = w->slots[i].busy;
    size_t need = w->slots[i].qlen + w->slots[i].plen + 1;
    pthread_mutex_unlock(&w->mu);
    if (!busy) continue;
    char *buf = lua_newuserdatauv(L, need, 0);
    size_t ql = 0, pl = 0;
    double started = 0;
    busy = 0;
    pthread_mutex_lock(&w->mu);
    slot *s = &w->slots[i];
    if (s->busy && s->qlen + s->plen + 1 <= need) {
      busy = 1;
      ql = s->qlen;
      pl = s->plen;
      memcpy(buf, s->buf, ql + pl);
      started = s->started;
    }
    pthread_mutex_unlock(&w->mu);
    if (!busy) { /* it ended meanwhile: skip it this time */
      lua_pop(L, 1);
      continue;
    }
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, buf, ql);
    lua_setfield(L, -2, "queue");
    lua_pushlstring(L, buf + ql, pl);
    lua_setfield(L, -2, "payload");
    lua_pushnumber(L, started);
    lua_setfield(L, -2, "started");
    lua_pushinteger(L, i + 1);
    lua_setfield(L, -2, "index");
    lua_rawseti(L, -3, (lua_Integer)lua_rawlen(L, -3) + 1);
    lua_pop(L, 1); /* the scratch buffer */
  }
  return 1;
}

/* ---- the main thread ---------------------------------------------------------- */

static void call_hook(lua_State *L, int opts, const char *name) {
  lua_getfield(L, opts, name);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (mc_pcall(L, 0, 0) != LUA_OK) {
    char what[64];
    snprintf(what, sizeof what, "worker %s failed", name);
    mc_log_error(what, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static int start_threads(worker *w) {
  for (int i = 0; i < w->concurrency; i++) {
    thread_arg *a = malloc(sizeof *a);
    if (a == NULL) return -1;
    a->w = w;
    a->index = i;
    atomic_fetch_add(&w->running, 1);
    if (pthread_create(&w->threads[i], NULL, thread_main, a) != 0) {
      atomic_fetch_sub(&w->running, 1);
      free(a);
      return -1;
    }
  }
  return 0;
}

/* Each tick of the main loop: SIGTSTP quiets the worker; opts.tick runs. */
static void on_tick(void *ud, int sig) {
  lua_State *L = ud;
  if (sig == SIGTSTP) {
    atomic_store(&worker_of(L)->quiet, 1);
    printf("at=info msg=\"quiet: no new jobs\"\n");
  }
  call_hook(L, 1, "tick");
}

/* Waits for the threads; at the deadline hands the running jobs to opts.requeue
 * and returns 0 (threads abandoned), else joins them and returns 1. */
static int drain(lua_State *L, worker *w) {
  atomic_store(&w->stopping, 1);
  double deadline = mono_time() + w->shutdown_timeout;
  while (atomic_load(&w->running) > 0 && mono_time() < deadline) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (atomic_load(&w->running) > 0) {
    printf("at=warn msg=\"shutdown timeout: pushing unfinished jobs back\" running=%d\n",
           atomic_load(&w->running));
    call_hook(L, 1, "requeue");
    return 0;
  }
  for (int i = 0; i < w->concurrency; i++) pthread_join(w->threads[i], NULL);
  return 1;
}

static void read_opts(lua_State *L, worker *w) {
  luaL_checktype(L, 1, LUA_TTABLE);
  mc_options o = {L, 1, "worker"};
  w->concurrency = (int)mc_opt_integer(&o, "concurrency", 5, 1, 1000);
  w->inflight = (int)mc_opt_integer(&o, "inflight", 1, 1, 10000);
  w->nslots = w->concurrency * w->inflight;
  w->shutdown_timeout = mc_opt_number(&o, "shutdown_timeout", 25, 0, 86400);
  w->watch = mc_opt_boolean(&o, "reload", 1) ? mc_opt_dirs(&o, "watch", w->boot->root) : NULL;
  const char *identity = mc_opt_string(&o, "identity", NULL, NULL);
  if (identity == NULL) luaL_error(L, "worker: identity must be a string");
  snprintf(w->identity, sizeof w->identity, "%s", identity);
}

/* run(opts) -> true | nil, err. Blocks until SIGTERM/SIGINT and the drain. */
static int w_run(lua_State *L) {
  worker *w = lua_newuserdatauv(L, sizeof *w, 0); /* lives in this call's frame */
  memset(w, 0, sizeof *w);
  lua_getfield(L, LUA_REGISTRYINDEX, "mc.boot");
  w->boot = lua_touserdata(L, -1);
  lua_pop(L, 1);
  read_opts(L, w); /* leaves the watched folders on the stack */
  w->slots = lua_newuserdatauv(L, sizeof(slot) * (size_t)w->nslots, 0);
  memset(w->slots, 0, sizeof(slot) * (size_t)w->nslots);
  w->threads = lua_newuserdatauv(L, sizeof(pthread_t) * (size_t)w->concurrency, 0);
  if (mc_pool_init(&w->pool, w->concurrency, build_state, w) != 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "the worker code failed to load (see the log)");
    return 2;
  }
  pthread_mutex_init(&w->mu, NULL);
  lua_pushlightuserdata(L, w);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &WORKER_KEY); /* tick and requeue see the slots */
  sigset_t set, old;
  mc_control_signals(&set);
  sigaddset(&set, SIGTSTP);               /* quiet, as Sidekiq takes it */
  pthread_sigmask(SIG_BLOCK, &set, &old); /* threads inherit it: signals come here */
  if (start_threads(w) != 0) {
    printf("at=error msg=\"cannot start worker threads\"\n");
    fflush(stdout);
    _exit(1); /* some threads may run: no clean way back */
  }
  printf("at=info msg=started concurrency=%d inflight=%d\n", w->concurrency, w->inflight);
  fflush(stdout);
  call_hook(L, 1, "tick");
  mc_watch watch = {&w->pool, w->watch, on_tick, L};
  mc_watch_loop(&watch, &set);
  if (!drain(L, w)) {
    printf("at=info msg=stopped\n");
    fflush(stdout);
    _exit(0); /* threads still run Lua in their states: nothing can be freed safely */
  }
  call_hook(L, 1, "stopped");
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &WORKER_KEY);
  for (int i = 0; i < w->nslots; i++) slot_free(&w->slots[i]);
  mc_pool_free(&w->pool);
  pthread_mutex_destroy(&w->mu);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  printf("at=info msg=stopped\n");
  lua_pushboolean(L, 1);
  return 1;
}

int luaopen_mc_worker_native(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"run", w_run},
    {"set_current", w_set_current},
    {"clear_current", w_clear_current},
    {"current", w_current},
    {"state", w_state},
    {"identity", w_identity},
    {"stale", w_stale},
    {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
