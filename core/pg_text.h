/* pg_text.h -- the text forms of core/pg_text.c, for core/pg.c. */
#ifndef MC_PG_TEXT_H
#define MC_PG_TEXT_H

#include <stddef.h>

#include <lua.h>

/* v in decimal into buf (24 bytes at least); returns its length. */
size_t mc_pg_format_integer(lua_Integer v, char *buf);

/* d as the shortest of 15 or 17 significant digits that reads back as d
 * (NaN/Infinity as Postgres spells them) into buf (64 bytes at least). */
size_t mc_pg_format_double(double d, char *buf);

/* pg.parse_array(text[, decoder]): a lua_CFunction. */
int mc_pg_parse_array(lua_State *L);

#endif
