/* pool.c -- see pool.h. */
#include <stdlib.h>

#include "pool.h"

static void close_all(mc_state *set, int n) {
  for (int i = 0; i < n; i++)
    if (set[i].L != NULL) lua_close(set[i].L);
}

/* Builds a full set of n states for generation gen; NULL if any fails. */
static mc_state *build_set(mc_pool *p, int n, unsigned gen) {
  mc_state *set = calloc((size_t)n, sizeof *set);
  if (set == NULL) return NULL;
  for (int i = 0; i < n; i++) {
    set[i].generation = gen;
    set[i].L = p->build(p->ud, &set[i].entry_ref);
    if (set[i].L == NULL) {
      close_all(set, i);
      free(set);
      return NULL;
    }
  }
  return set;
}

int mc_pool_init(mc_pool *p, int size, mc_state_builder build, void *ud) {
  p->size = size;
  p->build = build;
  p->ud = ud;
  p->generation = 1;
  p->idle = build_set(p, size, p->generation);
  if (p->idle == NULL) return -1;
  p->nidle = size;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  return 0;
}

int mc_pool_reload(mc_pool *p) {
  pthread_mutex_lock(&p->mu);
  unsigned gen = p->generation + 1;
  pthread_mutex_unlock(&p->mu);
  mc_state *fresh = build_set(p, p->size, gen); /* outside the lock: requests go on */
  if (fresh == NULL) return -1;
  pthread_mutex_lock(&p->mu);
  mc_state *old = p->idle;
  int nold = p->nidle;
  p->idle = fresh;
  p->nidle = p->size;
  p->generation = gen;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  close_all(old, nold);
  free(old);
  return (int)gen;
}

mc_state mc_pool_acquire(mc_pool *p) {
  pthread_mutex_lock(&p->mu);
  while (p->nidle == 0) pthread_cond_wait(&p->cv, &p->mu);
  mc_state s = p->idle[--p->nidle];
  pthread_mutex_unlock(&p->mu);
  return s;
}

void mc_pool_release(mc_pool *p, mc_state s) {
  pthread_mutex_lock(&p->mu);
  int keep = s.generation == p->generation && p->nidle < p->size;
  if (keep) {
    p->idle[p->nidle++] = s;
    pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  if (!keep) lua_close(s.L); /* borrowed across a reload: its code is stale */
}

void mc_pool_free(mc_pool *p) {
  close_all(p->idle, p->nidle);
  free(p->idle);
  p->idle = NULL;
  p->nidle = 0;
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
}
