/* watch.h -- hot reload for the long-running multi-threaded processes (web,
 * worker): noticing that files changed, and the main thread's loop that waits
 * for signals and swaps the pool's code. */
#ifndef MC_WATCH_H
#define MC_WATCH_H

#include <signal.h>
#include <stdint.h>

#include "options.h"
#include "pool.h"

/* A fingerprint of every file under the given folders (names, sizes, mtimes);
 * it changes when a file is added, removed, renamed or written. Missing folders
 * count as empty. dirs ends with NULL. */
uint64_t mc_tree_signature(const char *const *dirs);

/* opts[key], an array of folders (a relative one is under root), as the
 * NULL-terminated list mc_tree_signature takes. It lives in a userdata left on
 * the stack, which owns it; NULL (nothing pushed) when the key is absent. */
const char *const *mc_opt_dirs(const mc_options *o, const char *key, const char *root);

typedef struct mc_watch {
  mc_pool *pool;                      /* reloaded on SIGHUP or when a watched file changed */
  const char *const *dirs;            /* the watched folders, ending with NULL; NULL: SIGHUP only */
  void (*on_tick)(void *ud, int sig); /* after each tick or signal (0: none); may be NULL */
  void *ud;
} mc_watch;

/* Waits for the signals of set (blocked by the caller, in every thread) in
 * ticks of a quarter second until SIGTERM or SIGINT, which it returns. */
int mc_watch_loop(const mc_watch *w, const sigset_t *set);

#endif
