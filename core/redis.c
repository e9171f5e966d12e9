/* redis.c -- mc.redis (issue 3: being written). */
#include <lauxlib.h>

#include "host.h"

int luaopen_mc_redis(lua_State *L) {
  lua_newtable(L);
  return 1;
}
