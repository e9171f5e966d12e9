/* options.c -- see options.h. One set of readers, so every C function that takes
 * an options table checks types and ranges alike and words its errors alike. */
#include <lauxlib.h>

#include "options.h"

const char *mc_opt_string(const mc_options *o, const char *key, const char *def, size_t *len) {
  const char *s = def;
  int t = lua_getfield(o->L, o->idx, key);
  if (t != LUA_TNIL) {
    if (t != LUA_TSTRING) luaL_error(o->L, "%s: %s must be a string", o->who, key);
    s = lua_tolstring(o->L, -1, len);
  }
  lua_pop(o->L, 1); /* the table keeps the string alive */
  return s;
}

lua_Integer mc_opt_integer(const mc_options *o, const char *key, lua_Integer def, lua_Integer lo,
                           lua_Integer hi) {
  lua_Integer v = def;
  int t = lua_getfield(o->L, o->idx, key);
  if (t != LUA_TNIL) {
    int ok;
    v = lua_tointegerx(o->L, -1, &ok);
    if (t != LUA_TNUMBER || !ok || v < lo || v > hi) {
      if (hi == LUA_MAXINTEGER)
        luaL_error(o->L, "%s: %s must be an integer >= %I", o->who, key, (LUAI_UACINT)lo);
      luaL_error(o->L, "%s: %s must be an integer in [%I, %I]", o->who, key, (LUAI_UACINT)lo,
                 (LUAI_UACINT)hi);
    }
  }
  lua_pop(o->L, 1);
  return v;
}

double mc_opt_number(const mc_options *o, const char *key, double def, double lo, double hi) {
  double v = def;
  int t = lua_getfield(o->L, o->idx, key);
  if (t != LUA_TNIL) {
    v = lua_tonumber(o->L, -1);
    if (t != LUA_TNUMBER || !(v >= lo && v <= hi)) /* NaN fails too */
      luaL_error(o->L, "%s: %s must be a number in [%f, %f]", o->who, key, lo, hi);
  }
  lua_pop(o->L, 1);
  return v;
}

double mc_opt_seconds(const mc_options *o, const char *key, double def, double max) {
  double v = def;
  int t = lua_getfield(o->L, o->idx, key);
  if (t != LUA_TNIL) {
    v = lua_tonumber(o->L, -1);
    if (t != LUA_TNUMBER || !(v > 0 && v <= max))
      luaL_error(o->L, "%s: %s must be a number of seconds in (0, %d]", o->who, key, (int)max);
  }
  lua_pop(o->L, 1);
  return v;
}

int mc_opt_boolean(const mc_options *o, const char *key, int def) {
  int t = lua_getfield(o->L, o->idx, key);
  int v = t == LUA_TNIL ? def : lua_toboolean(o->L, -1);
  lua_pop(o->L, 1);
  return v;
}
