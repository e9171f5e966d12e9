/* url.h -- what url.c shares with the other C modules. */
#ifndef MC_URL_H
#define MC_URL_H

#include <lua.h>

/* Pops a name (at -2) and a value (at -1) into the fields table at index t (not
 * relative): a name's first value is a string, a second turns it into an array
 * of both, further ones are appended. The shape of query strings and forms. */
void mc_url_add_field(lua_State *L, int t);

#endif
