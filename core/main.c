/* main.c -- the multiconnect binary: boot, then hand argv to mc.main (Lua),
 * which dispatches the subcommands. Everything runs under lua_pcall, so a Lua
 * error ends as a traceback on stderr and exit status 1, never a crash. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <curl/curl.h>

#include "dotenv.h"
#include "host.h"

/* Calls require("mc.main").main(arg1, ..., argN); its integer result is the
 * exit status. */
static int run_main(lua_State *L, int argc, char **argv) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mc.main");
  if (mc_pcall(L, 1, 1) != LUA_OK) goto fail;
  lua_getfield(L, -1, "main");
  luaL_checkstack(L, argc, "too many arguments");
  for (int i = 1; i < argc; i++) lua_pushstring(L, argv[i]);
  if (mc_pcall(L, argc - 1, 1) != LUA_OK) goto fail;
  return lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
fail:
  fprintf(stderr, "multiconnect: %s\n", lua_tostring(L, -1));
  return 1;
}

int main(int argc, char **argv) {
  mc_boot boot;
  int status = 1;
  setvbuf(stdout, NULL, _IOLBF, 0); /* log lines leave at once, whole */
  /* A peer that hangs up must be an EPIPE for the writer, not the end of the
   * process: OpenSSL writes to its sockets without MSG_NOSIGNAL. */
  signal(SIGPIPE, SIG_IGN);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "multiconnect: curl_global_init failed\n");
    return 1;
  }
  /* The specs set every variable they mean: neither `test` nor the processes
   * it starts read the developer's .env. */
  if (argc > 1 && strcmp(argv[1], "test") == 0) setenv("MC_DOTENV", "off", 1);
  if (mc_boot_init(&boot, argv[0]) == 0 && mc_dotenv_load(boot.root) == 0) {
    lua_State *L = mc_state_new(&boot);
    if (L != NULL) {
      status = run_main(L, argc, argv);
      lua_close(L);
    }
  }
  mc_boot_free(&boot);
  curl_global_cleanup();
  return status;
}
