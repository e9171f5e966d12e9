/* readline.c -- mc.readline: GNU readline's line editing and history for the
 * console (core/lua/mc/console.lua).
 *
 *   readline(prompt) -> line | nil (end of input) | false (Ctrl-C cancelled it)
 *   add_history(line), stifle_history(n)
 *   read_history(path), write_history(path), append_history(n, path),
 *   history_truncate_file(path, n) -> true | nil, err
 *   isatty(fd) -> boolean
 *
 * readline() uses the callback interface with a select() loop, as Python's
 * readline module does, so that a SIGINT (our handler only sets a flag) ends the
 * wait with EINTR: the line is dropped and the terminal restored, and the
 * console carries on. readline's own signal handlers stay off (rl_catch_signals
 * = 0); SIGINT keeps its previous disposition outside readline(). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <lauxlib.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "host.h"

#define LINE_BOX "mc.readline.line"

static volatile sig_atomic_t interrupted;

/* The line the callback hands over: malloc'd by readline, owned by the box
 * (a userdata on the Lua stack) once there. */
typedef struct line_box {
  char *line;
  int done;
} line_box;

static line_box *current; /* the box of the readline() in progress (one thread) */

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

static void on_line(char *line) {
  current->line = line;
  current->done = 1;
  rl_callback_handler_remove();
}

static int box_gc(lua_State *L) {
  line_box *b = luaL_checkudata(L, 1, LINE_BOX);
  free(b->line);
  b->line = NULL;
  return 0;
}

/* Reads one line into b; returns 1 when Ctrl-C cancelled it. */
static int read_line(line_box *b, const char *prompt) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint; /* no SA_RESTART: select() must return EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  interrupted = 0;
  current = b;
  rl_callback_handler_install(prompt, on_line);
  int fd = fileno(rl_instream ? rl_instream : stdin);
  while (!b->done && !interrupted) {
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    int n = select(fd + 1, &fds, NULL, NULL, NULL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { /* the input is gone: end of input */
      rl_callback_handler_remove();
      b->done = 1;
      break;
    }
    rl_callback_read_char();
  }
  int cancelled = !b->done;
  if (cancelled) {
    rl_free_line_state();
    rl_callback_sigcleanup();
    rl_cleanup_after_signal();
    rl_callback_handler_remove();
    fputc('\n', rl_outstream ? rl_outstream : stdout);
  }
  current = NULL;
  sigaction(SIGINT, &old, NULL);
  return cancelled;
}

static int l_readline(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "");
  line_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->line = NULL;
  b->done = 0;
  luaL_setmetatable(L, LINE_BOX);
  if (read_line(b, prompt)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (b->line == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, b->line);
  free(b->line);
  b->line = NULL;
  return 1;
}

static int l_add_history(lua_State *L) {
  add_history(luaL_checkstring(L, 1));
  return 0;
}

/* stifle_history(n): keep at most n entries in memory */
static int l_stifle_history(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 1000000, 1, "out of range");
  stifle_history((int)n);
  return 0;
}

/* The history functions return 0 or an errno value. */
static int errno_result(lua_State *L, int rc, const char *path) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(rc));
  return 2;
}

static int l_read_history(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  return errno_result(L, read_history(path), path);
}

static int l_write_history(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  return errno_result(L, write_history(path), path);
}

/* append_history(n, path): the last n entries, to a file that exists */
static int l_append_history(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  const char *path = luaL_checkstring(L, 2);
  luaL_argcheck(L, n >= 0 && n <= 1000000, 1, "out of range");
  return errno_result(L, append_history((int)n, path), path);
}

static int l_history_truncate_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0 && n <= 1000000, 2, "out of range");
  return errno_result(L, history_truncate_file(path, (int)n), path);
}

static int l_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= 1024, 1, "not a file descriptor");
  lua_pushboolean(L, isatty((int)fd) == 1);
  return 1;
}

int luaopen_mc_readline(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"readline", l_readline},
    {"add_history", l_add_history},
    {"stifle_history", l_stifle_history},
    {"read_history", l_read_history},
    {"write_history", l_write_history},
    {"append_history", l_append_history},
    {"history_truncate_file", l_history_truncate_file},
    {"isatty", l_isatty},
    {NULL, NULL},
  };
  if (luaL_newmetatable(L, LINE_BOX)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  rl_readline_name = "multiconnect"; /* for $if multiconnect in ~/.inputrc */
  rl_catch_signals = 0;
  rl_catch_sigwinch = 1;
  luaL_newlib(L, funcs);
  return 1;
}
