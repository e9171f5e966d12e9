/* watch.c -- see watch.h. Polling a fingerprint of the tree (a few hundred stat
 * calls per second at most) keeps this simple and correct on every filesystem,
 * where inotify would need a watch per folder and care with editors that
 * replace files. */
#include <limits.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>

#include "watch.h"

#define FNV_PRIME 1099511628211ULL

static _Thread_local uint64_t acc; /* nftw has no user pointer */

static uint64_t mix(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * FNV_PRIME;
  return h;
}

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)ftw;
  if (type != FTW_F) return 0;
  uint64_t h = mix(14695981039346656037ULL, path, strlen(path));
  h = mix(h, &st->st_size, sizeof st->st_size);
  h = mix(h, &st->st_mtim, sizeof st->st_mtim);
  acc += h; /* order-independent: nftw's order may vary */
  return 0;
}

uint64_t mc_tree_signature(const char *const *dirs) {
  acc = 0;
  for (; *dirs != NULL; dirs++) nftw(*dirs, visit, 16, FTW_PHYS);
  return acc;
}

const char *const *mc_opt_dirs(const mc_options *o, const char *key, const char *root) {
  lua_State *L = o->L;
  int t = lua_getfield(L, o->idx, key), list = lua_gettop(L);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  if (t != LUA_TTABLE) luaL_error(L, "%s: %s must be an array of folders", o->who, key);
  size_t n = lua_rawlen(L, list); /* raw, as the rawgeti below: no __len to lie */
  if (n > INT_MAX - 1) luaL_error(L, "%s: %s has too many folders", o->who, key);
  const char **dirs = lua_newuserdatauv(L, (n + 1) * sizeof *dirs, 1);
  lua_createtable(L, (int)n, 0); /* the path strings, which the userdata keeps alive */
  for (lua_Integer i = 1; i <= (lua_Integer)n; i++) {
    if (lua_rawgeti(L, list, i) != LUA_TSTRING)
      luaL_error(L, "%s: %s[%I] must be a string", o->who, key, i);
    if (lua_tostring(L, -1)[0] != '/') {
      lua_pushfstring(L, "%s/%s", root, lua_tostring(L, -1));
      lua_remove(L, -2);
    }
    dirs[i - 1] = lua_tostring(L, -1);
    lua_rawseti(L, -2, i);
  }
  dirs[n] = NULL;
  lua_setiuservalue(L, -2, 1);
  lua_remove(L, list);
  return dirs;
}

/* Builds a new set of states; they replace the old only if all load. */
static void reload(mc_pool *pool, const char *why) {
  int gen = mc_pool_reload(pool);
  if (gen < 0)
    printf("at=error msg=\"reload failed: previous code keeps serving\" reason=%s\n", why);
  else printf("at=info msg=reloaded reason=%s generation=%d\n", why, gen);
}

int mc_watch_loop(const mc_watch *w, const sigset_t *set) {
  uint64_t seen = w->dirs ? mc_tree_signature(w->dirs) : 0, pending = seen;
  struct timespec tick = {0, 250 * 1000 * 1000};
  for (;;) {
    int sig = sigtimedwait(set, NULL, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      printf("at=info msg=\"shutting down\" signal=%s\n", sig == SIGTERM ? "TERM" : "INT");
      return sig;
    }
    const char *why = sig == SIGHUP ? "SIGHUP" : NULL;
    if (w->dirs != NULL) {
      uint64_t now = mc_tree_signature(w->dirs);
      if (now != seen && now == pending) { /* the same for one tick: the write is done */
        seen = now;
        if (why == NULL) why = "files-changed";
      }
      pending = now;
    }
    if (why != NULL) reload(w->pool, why);
    if (w->on_tick != NULL) w->on_tick(w->ud, sig > 0 ? sig : 0);
    fflush(stdout);
  }
}
