/* isolate_lib.c -- guards for the stock library functions an isolate keeps.
 *
 * The count hook and the deadline fire only between VM instructions, so a C
 * function that loops without returning to Lua cannot be stopped. Measured on
 * Lua 5.4.4 here: string.rep("", 1e9) spins 4.6 s, table.move({}, 1, 1e8, 1)
 * 7.3 s, ("a"):rep(150):find(".-.-.-.-b") 20 s, a pattern of 25 "a?" on 25
 * bytes 47 s, a 1,000-item pattern without quantifiers over 200 KB 6 s, and a
 * plain find of a 10 KB needle in 2 MB 0.6 s. Each wrapper estimates the work
 * before calling the original and raises when it is over a bound; everything
 * that allocates as it goes is left to the allocator's cap. */
#include <stdbool.h>
#include <string.h>

#include <lauxlib.h>

#include "isolate.h"

/* Estimated steps a pattern match may take: (n+1)^(unbounded items + 1 unless
 * anchored) * 2^(optional items) * (items + 1) for a subject of n bytes.
 * Measured here at the bound: 99 `%a` then `b` over 40 KB (the slowest unit,
 * ~40 ns) 0.17 s; "a*b" over 1,000 bytes 0.03 s; ".-.-b" over 100 bytes 0.01 s.
 * What it admits: one unbounded item ~1,000 bytes (anchored: any length up to
 * ~2 MB / items), two ~100 bytes (anchored ~1,000), three anchored ~100. */
#define PATTERN_WORK 4e6
/* Bytes a plain find may compare (memchr + memcmp, ~30 GB/s here): a 250-byte
 * needle in 6 MB. */
#define PLAIN_WORK 1.5e9
/* Elements table.move/insert/remove may shift in one call: ~0.15 s of nils. A
 * real array that long would not fit the memory cap anyway. */
#define MAX_SHIFT 2000000

enum pattern_fn { PAT_FIND, PAT_MATCH, PAT_GMATCH, PAT_GSUB };

/* What drives a Lua pattern's backtracking: each unbounded item (`*`, `+`, `-`
 * that is not last, `%b`, a back-reference) can try every position of the
 * subject, each `?` doubles the tries, and every try walks the items. */
typedef struct shape {
  int unbounded, optional, items;
  bool anchored;
} shape;

static bool has_specials(const char *p, size_t m) {
  for (size_t i = 0; i < m; i++)
    if (strchr("^$*+?.([%-", p[i]) != NULL && p[i] != '\0') return true;
  return false;
}

/* Index just past the single-character class starting at i (as lstrlib reads
 * it; a malformed class ends the pattern, and the original then raises). */
static size_t class_end(const char *p, size_t m, size_t i) {
  if (p[i] == '%') return i + 2 <= m ? i + 2 : m;
  if (p[i] != '[') return i + 1;
  size_t j = i + 1;
  if (j < m && p[j] == '^') j++;
  do { /* the first byte of a set is never its closing ']' */
    if (j >= m) return m;
    if (p[j++] == '%' && j < m) j++;
  } while (j >= m || p[j] != ']');
  return j + 1;
}

/* Only captures left: a quantifier here matches at its first try. */
static bool only_captures(const char *p, size_t m, size_t i) {
  for (; i < m; i++)
    if (p[i] != '(' && p[i] != ')') return false;
  return true;
}

static void read_shape(const char *p, size_t m, shape *s) {
  memset(s, 0, sizeof *s);
  size_t i = 0;
  if (m > 0 && p[0] == '^') s->anchored = true, i = 1;
  while (i < m) {
    char c = p[i];
    if (c == '(' || c == ')' || (c == '$' && i + 1 == m)) {
      i++;
      continue;
    }
    s->items++;
    if (c == '%' && i + 1 < m && p[i + 1] == 'b') {
      s->unbounded++;
      i += 4;
      continue;
    }
    if (c == '%' && i + 1 < m && p[i + 1] == 'f') { /* zero-width: one look */
      i = i + 2 < m ? class_end(p, m, i + 2) : m;
      continue;
    }
    if (c == '%' && i + 1 < m && p[i + 1] >= '0' && p[i + 1] <= '9') {
      s->unbounded++; /* compares a capture as long as the subject */
      i += 2;
      continue;
    }
    size_t e = class_end(p, m, i);
    if (e < m && (p[e] == '*' || p[e] == '+' || p[e] == '-')) {
      if (!only_captures(p, m, e + 1)) s->unbounded++;
      i = e + 1;
    } else if (e < m && p[e] == '?') {
      s->optional++;
      i = e + 1;
    } else i = e;
  }
}

static double power(double base, int exp) {
  double r = 1;
  while (exp-- > 0 && r < 1e300) r *= base;
  return r;
}

/* Estimated work for fn(subject of n bytes, pattern p of m bytes). */
static double pattern_work(int fn, const char *p, size_t m, size_t n, bool plain) {
  if (plain) return n >= m ? (double)(n - m + 1) * (double)m / (PLAIN_WORK / PATTERN_WORK) : 0;
  shape s;
  read_shape(p, m, &s);
  /* find/match/gsub try each start unless anchored; gmatch reads '^' literally */
  int scans = (s.anchored && fn != PAT_GMATCH) ? 0 : 1;
  return power((double)n + 1, s.unbounded + scans) * power(2, s.optional) * (s.items + 1);
}

/* string.find/match/gmatch/gsub with the original as upvalue 1 and which one
 * as upvalue 2. gsub's function or table replacement runs as Lua, under the
 * hook, so it needs no estimate. */
static int guarded_pattern(lua_State *L) {
  size_t n, m;
  luaL_checklstring(L, 1, &n);
  const char *p = luaL_checklstring(L, 2, &m);
  int fn = (int)lua_tointeger(L, lua_upvalueindex(2));
  bool plain = fn == PAT_FIND && (lua_toboolean(L, 4) || !has_specials(p, m));
  if (pattern_work(fn, p, m, n, plain) > PATTERN_WORK)
    return luaL_error(L, "pattern too complex for a subject of %I bytes", (LUAI_UACINT)n);
  return isolate_call_original(L);
}

int isolate_call_original(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* string.rep copying nothing n times loops n times without allocating. */
static int guarded_rep(lua_State *L) {
  size_t l, lsep;
  luaL_checklstring(L, 1, &l);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_optlstring(L, 3, "", &lsep);
  if (n > 0 && l == 0 && lsep == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  return isolate_call_original(L);
}

static int refuse_shift(lua_State *L, const char *fname) {
  return luaL_error(L, "%s: more than %d elements to shift", fname, MAX_SHIFT);
}

/* table.move(a1, f, e, t [, a2]): e - f + 1 reads and writes, nils included. */
static int guarded_move(lua_State *L) {
  lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
  if (e >= f && (f <= 0 ? e >= MAX_SHIFT + f : e - f >= MAX_SHIFT))
    return refuse_shift(L, "table.move");
  return isolate_call_original(L);
}

/* table.insert(t, pos, v) and table.remove(t, pos) shift up to #t elements, and
 * #t can be huge for a few keys (a border at 2^50) or a __len. __len runs here
 * and again in the original. */
static int guarded_shift(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE && lua_gettop(L) >= 2) {
    lua_Integer len = luaL_len(L, 1);
    if (len > MAX_SHIFT || len < -MAX_SHIFT)
      return refuse_shift(L, lua_tostring(L, lua_upvalueindex(2)));
  }
  return isolate_call_original(L);
}

void isolate_wrap(lua_State *L, const char *lib, const char *name, lua_CFunction fn) {
  lua_getglobal(L, lib);
  lua_getfield(L, -1, name);
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

void isolate_guard_libs(lua_State *L) {
  static const char *const patterns[] = {"find", "match", "gmatch", "gsub"};
  lua_getglobal(L, "string"); /* also the strings' __index: methods are covered */
  for (int i = PAT_FIND; i <= PAT_GSUB; i++) {
    lua_getfield(L, -1, patterns[i]);
    lua_pushinteger(L, i);
    lua_pushcclosure(L, guarded_pattern, 2);
    lua_setfield(L, -2, patterns[i]);
  }
  lua_pop(L, 1);
  isolate_wrap(L, "string", "rep", guarded_rep);
  isolate_wrap(L, "table", "move", guarded_move);
  static const char *const shifts[] = {"insert", "remove"};
  lua_getglobal(L, "table");
  for (int i = 0; i < 2; i++) {
    lua_getfield(L, -1, shifts[i]);
    lua_pushfstring(L, "table.%s", shifts[i]);
    lua_pushcclosure(L, guarded_shift, 2);
    lua_setfield(L, -2, shifts[i]);
  }
  lua_pop(L, 1);
}
