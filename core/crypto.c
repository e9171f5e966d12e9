/* crypto.c -- mc.crypto (issue 3: being written). */
#include <lauxlib.h>

#include "host.h"

int luaopen_mc_crypto(lua_State *L) {
  lua_newtable(L);
  return 1;
}
