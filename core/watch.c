/* watch.c -- a fingerprint of a file tree, polled by the long-running processes
 * to notice script edits. Polling (a few hundred stat calls per second at most)
 * keeps this simple and correct on every filesystem, where inotify would need a
 * watch per folder and care with editors that replace files. */
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>

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
