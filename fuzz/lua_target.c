/* lua_target.c -- the libFuzzer harness for the Lua-side parsers: a state built
 * as the host builds its own (mc_state_new: the standard libraries, the global
 * mc, every mc.* module), in which fuzz/targets/$FUZZ_TARGET.lua is run once; it
 * returns the function that each input is given to, as one string.
 *
 * A target answers hostile input with nil, err or a refusal, never a raise:
 * any error that leaves the target function is reported as a crash (abort),
 * with its traceback, and so is a sanitizer finding inside the C modules. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mc_boot boot;
static lua_State *L;
static int target_ref = LUA_NOREF;
static const char *target;

/* Loads the target file and keeps the function it returns in the registry. */
static int load_target(lua_State *S) {
  lua_pushfstring(S, "%s/fuzz/targets/%s.lua", boot.root, target);
  if (luaL_loadfilex(S, lua_tostring(S, -1), "t") != LUA_OK) return lua_error(S);
  lua_call(S, 0, 1);
  luaL_checktype(S, -1, LUA_TFUNCTION);
  target_ref = luaL_ref(S, LUA_REGISTRYINDEX);
  return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  target = getenv("FUZZ_TARGET");
  if (target == NULL || *target == '\0') {
    fprintf(stderr, "fuzz: set FUZZ_TARGET to a file name of fuzz/targets/ (without .lua)\n");
    exit(2);
  }
  if (mc_boot_init(&boot, (*argv)[0]) != 0 || (L = mc_state_new(&boot)) == NULL) exit(2);
  (void)argc;
  lua_pushcfunction(L, load_target);
  if (mc_pcall(L, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz: target %s: %s\n", target, lua_tostring(L, -1));
    exit(2);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, target_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (mc_pcall(L, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz: target %s raised: %s\n", target, lua_tostring(L, -1));
    abort();
  }
  return 0;
}
