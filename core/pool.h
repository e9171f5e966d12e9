/* pool.h -- Lua states for a multi-threaded process, built ahead and swapped
 * whole on reload.
 *
 * A pool holds `size` states of one generation, each with the app's entry point
 * loaded. A thread borrows one for a request (or job) and gives it back. Reload
 * builds a complete new set first; only if every state loads does it replace the
 * old set, so code that fails to load never serves, and every state of a
 * generation runs the same code. A state borrowed across a reload is closed when
 * given back. */
#ifndef MC_POOL_H
#define MC_POOL_H

#include <pthread.h>

#include <lua.h>

typedef struct mc_state {
  lua_State *L;
  int entry_ref; /* registry ref of the entry point the builder left */
  unsigned generation;
} mc_state;

/* Builds one state and leaves its entry point in the registry (*entry_ref);
 * returns NULL (after logging why) when the code does not load. */
typedef lua_State *(*mc_state_builder)(void *ud, int *entry_ref);

typedef struct mc_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mc_state *idle;
  int nidle, size;
  unsigned generation;
  mc_state_builder build;
  void *ud;
} mc_pool;

int mc_pool_init(mc_pool *p, int size, mc_state_builder build, void *ud); /* 0 | -1 */
int mc_pool_reload(mc_pool *p);       /* new generation | -1, old set kept */
mc_state mc_pool_acquire(mc_pool *p); /* blocks until a state is idle */
void mc_pool_release(mc_pool *p, mc_state s);
void mc_pool_free(mc_pool *p); /* every state must have been given back */

#endif
