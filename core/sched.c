/* sched.c -- mc.sched_native: what lets a job's network waits yield.
 *
 * A coroutine the scheduler (core/lua/mc/sched.lua) runs is "adopted": marked in
 * a weak registry table. mc.redis, mc.pg and mc.http ask mc_sched_can_yield
 * before they wait; in an adopted coroutine that can yield they yield instead
 * (mc_sched_wait: the token, a key, a socket, the events, a deadline) and the
 * scheduler resumes them when the socket is ready, the deadline passed, or the
 * key (an HTTP transfer) is done; the C function goes on in its continuation.
 * Anywhere else (the main coroutine, a script's own coroutine, inside a
 * metamethod) they block as before: scripts do not change.
 *
 * poll() is the scheduler's one wait: the waiting sockets and this state's HTTP
 * transfers (libcurl's multi handle, core/http.c) together. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>

#include <lauxlib.h>

#include "host.h"

static const char ADOPTED_KEY = 0; /* registry: weak-keyed {[thread] = true} */
static const char TOKEN = 0;       /* its address: what every scheduler yield starts with */

double mc_sched_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Pushes the adopted-threads table, made on first use. */
static void push_adopted(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ADOPTED_KEY) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ADOPTED_KEY);
}

int mc_sched_can_yield(lua_State *L) {
  if (!lua_isyieldable(L)) return 0;
  push_adopted(L);
  lua_pushthread(L);
  int adopted = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return adopted;
}

int mc_sched_wait(lua_State *L, void *key, int fd, int events, double deadline_ms, lua_KContext ctx,
                  lua_KFunction k) {
  lua_pushlightuserdata(L, (void *)&TOKEN);
  if (key != NULL) lua_pushlightuserdata(L, key);
  else lua_pushnil(L);
  lua_pushinteger(L, fd);
  lua_pushinteger(L, events);
  lua_pushnumber(L, deadline_ms);
  return lua_yieldk(L, 5, ctx, k);
}

/* adopt(co[, on]): marks co as a scheduler coroutine (on = false: unmarks). */
static int s_adopt(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  push_adopted(L);
  lua_pushvalue(L, 1);
  if (lua_isnoneornil(L, 2) || lua_toboolean(L, 2)) lua_pushboolean(L, 1);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  return 0;
}

/* adopted([co]) -> whether co (default: the running coroutine) is adopted and
 * can yield now. */
static int s_adopted(lua_State *L) {
  lua_State *co = lua_isnoneornil(L, 1) ? L : lua_tothread(L, 1);
  luaL_argcheck(L, co != NULL, 1, "thread expected");
  push_adopted(L);
  if (co == L) lua_pushthread(L);
  else lua_pushvalue(L, 1);
  int adopted = lua_rawget(L, -2) != LUA_TNIL;
  lua_pushboolean(L, adopted && (co != L || lua_isyieldable(L)));
  return 1;
}

/* now_ms() -> the monotonic clock in milliseconds, the deadlines' clock */
static int s_now_ms(lua_State *L) {
  lua_pushnumber(L, mc_sched_now_ms());
  return 1;
}

/* poll(fds, events, timeout_ms) -> ready, done
 *   fds, events: arrays of the same length (the waiting sockets);
 *   ready: the indices of the sockets that are ready (or in error);
 *   done: the keys of this state's HTTP transfers that finished. */
static int s_poll(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  double t = luaL_checknumber(L, 3);
  int timeout = t <= 0 ? 0 : t > INT_MAX ? INT_MAX : (int)ceil(t);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, n < INT_MAX / (lua_Integer)sizeof(struct pollfd), 1, "too many sockets");
  struct pollfd *p = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *p, 0);
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    lua_rawgeti(L, 2, i + 1);
    p[i].fd = (int)lua_tointeger(L, -2);
    p[i].events = (short)lua_tointeger(L, -1);
    p[i].revents = 0;
    lua_pop(L, 2);
  }
  lua_newtable(L); /* ready */
  lua_newtable(L); /* done */
  int rc = mc_http_wait(L, p, (int)n, timeout, lua_gettop(L));
  if (rc < 0 && errno != EINTR) return luaL_error(L, "sched: poll failed");
  lua_Integer k = 0;
  for (lua_Integer i = 0; i < n && rc > 0; i++)
    if (p[i].revents != 0) {
      lua_pushinteger(L, i + 1);
      lua_rawseti(L, -3, ++k);
    }
  return 2;
}

int luaopen_mc_sched_native(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"adopt", s_adopt}, {"adopted", s_adopted}, {"now_ms", s_now_ms},
    {"poll", s_poll},   {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  lua_pushlightuserdata(L, (void *)&TOKEN);
  lua_setfield(L, -2, "TOKEN");
  lua_pushinteger(L, POLLIN);
  lua_setfield(L, -2, "POLLIN");
  lua_pushinteger(L, POLLOUT);
  lua_setfield(L, -2, "POLLOUT");
  return 1;
}
