/* isolate.h -- what isolate.c takes from isolate_lib.c. */
#ifndef MC_ISOLATE_H
#define MC_ISOLATE_H

#include <lua.h>

/* Replaces, in an isolate's freshly opened libraries, the functions that can run
 * unbounded inside one C call (pattern matching, string.rep of nothing, the
 * table shifts) with guarded wrappers. Runs protected; may raise (memory). */
void isolate_guard_libs(lua_State *L);

/* Replaces lib[name] with a C closure of fn whose upvalue 1 is the original. */
void isolate_wrap(lua_State *L, const char *lib, const char *name, lua_CFunction fn);

/* Calls upvalue 1 with the current frame's arguments; returns its results. */
int isolate_call_original(lua_State *L);

#endif
