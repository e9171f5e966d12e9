/* http.c -- mc.http (issue 3: being written). */
#include <lauxlib.h>

#include "host.h"

int luaopen_mc_http(lua_State *L) {
  lua_newtable(L);
  return 1;
}
