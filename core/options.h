/* options.h -- reading the options table a Lua caller passes to a C function:
 * each reader takes opts[key], gives the default when it is absent (nil), and
 * raises "<who>: <key> must be ..." when it is there but wrong (misuse raises). */
#ifndef MC_OPTIONS_H
#define MC_OPTIONS_H

#include <stddef.h>

#include <lua.h>

typedef struct mc_options {
  lua_State *L;
  int idx;         /* the table's absolute stack index */
  const char *who; /* the caller's name in errors: "http", "isolate.new" */
} mc_options;

/* A string stays valid while the table holds it: nothing may change the table. */
const char *mc_opt_string(const mc_options *o, const char *key, const char *def, size_t *len);
lua_Integer mc_opt_integer(const mc_options *o, const char *key, lua_Integer def, lua_Integer lo,
                           lua_Integer hi);
double mc_opt_number(const mc_options *o, const char *key, double def, double lo, double hi);
double mc_opt_seconds(const mc_options *o, const char *key, double def,
                      double max);                                 /* in (0, max] */
int mc_opt_boolean(const mc_options *o, const char *key, int def); /* any value but nil counts */

#endif
