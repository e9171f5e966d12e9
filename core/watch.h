/* watch.h -- noticing that files changed, for hot reload. */
#ifndef MC_WATCH_H
#define MC_WATCH_H

#include <stdint.h>

/* A fingerprint of every file under the given folders (names, sizes, mtimes);
 * it changes when a file is added, removed, renamed or written. Missing folders
 * count as empty. dirs ends with NULL. */
uint64_t mc_tree_signature(const char *const *dirs);

#endif
