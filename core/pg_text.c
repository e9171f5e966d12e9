/* pg_text.c -- the text forms mc.pg reads and writes that libpq leaves to us:
 * numbers written as parameters and COPY fields (exact, shortest, fast), and
 * Postgres's array literals read back as Lua arrays (pg.parse_array). Pure
 * functions over buffers and the Lua stack: no connection here (core/pg.c). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "host.h"
#include "pg_text.h"

#define ARRAY_MAX_DEPTH 8 /* Postgres allows 6 dimensions */

/* ---- numbers as text ------------------------------------------------------ */

static const long double POW10[] = {
  1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
  1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
  1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L, /* powers of ten up to here are exact in an x87 long double */
};

/* snprintf's "%lld" costs as much as the rest of a COPY field. */
size_t mc_pg_format_integer(lua_Integer v, char *buf) {
  char tmp[24];
  size_t n = 0, len = 0;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
  } while ((u /= 10) != 0);
  if (v < 0) buf[len++] = '-';
  while (n > 0) buf[len++] = tmp[--n];
  buf[len] = '\0';
  return len;
}

/* Plain decimal notation of 0.digits * 10^(e+1) (digits: n of them, no
 * trailing zeros), with a '-' first if negative. Returns its length. */
static size_t write_decimal(char *buf, int negative, const char *digits, int n, int e) {
  char *p = buf;
  if (negative) *p++ = '-';
  if (e < 0) {
    *p++ = '0';
    *p++ = '.';
    for (int i = 0; i < -e - 1; i++) *p++ = '0';
  }
  for (int i = 0; i < n || i <= e; i++) {
    if (e >= 0 && i == e + 1) *p++ = '.';
    *p++ = i < n ? digits[i] : '0';
  }
  *p = '\0';
  return (size_t)(p - buf);
}

/* Whether v / 10^k (scaled = a * 10^k) reads back as a: within half an ulp of
 * it (the smaller half below a power of two). Decided in long double, whose
 * error here is under 0.01 of a unit of v; closer calls are left to strtod. */
static int reads_back(double a, long double scaled, uint64_t v, int k, const char *text) {
  int e2;
  double m = frexp(a, &e2);
  long double half = ldexpl(POW10[k], e2 - (m == 0.5 ? 55 : 54));
  long double off = fabsl(scaled - (long double)v);
  if (off < half - 0.01L) return 1;
  if (off > half + 0.01L) return 0;
  return fabs(strtod(text, NULL)) == a;
}

/* d (1e-5 <= |d| < 1e16) rounded to ndigits (<= 17) significant digits, in
 * plain decimal notation, if that reads back as d; else 0. */
static size_t decimal_digits(double d, int ndigits, char *buf) {
  double a = fabs(d);
  int e = (int)floor(log10(a)), k = ndigits - 1 - e;
  uint64_t top = 1;
  for (int i = 1; i < ndigits; i++) top *= 10;
  if (k < 0 || k > 27) return 0;
  long double scaled = (long double)a * POW10[k];
  uint64_t v = (uint64_t)llroundl(scaled);
  if (v >= top * 10) { /* log10 rounded up past a power of ten */
    if (--k < 0) return 0;
    e++;
    scaled = (long double)a * POW10[k];
    v = (uint64_t)llroundl(scaled);
  }
  if (v < top || v >= top * 10) return 0;
  char digits[20];
  uint64_t rest = v;
  for (int i = ndigits - 1; i >= 0; i--, rest /= 10) digits[i] = (char)('0' + rest % 10);
  int n = ndigits;
  /* cppcheck-suppress uninitvar ; a false positive: n - 1 < ndigits, all written above */
  while (n > 1 && digits[n - 1] == '0') n--;
  size_t len = write_decimal(buf, d < 0, digits, n, e);
  return reads_back(a, scaled, v, k, buf) ? len : 0;
}

/* The shortest of 15 or 17 significant digits that reads back as d, so that
 * 0.1 stays "0.1" in a numeric column. glibc's "%.17g" alone is exact but slow
 * (~1.7 us a value: multiprecision), which made COPY of floats CPU-bound.
 * buf holds at least 64 bytes. */
size_t mc_pg_format_double(double d, char *buf) {
  if (isnan(d)) return (size_t)sprintf(buf, "NaN");
  if (isinf(d)) return (size_t)sprintf(buf, d > 0 ? "Infinity" : "-Infinity");
  if (d == floor(d) && fabs(d) < 9007199254740992.0)
    return mc_pg_format_integer((lua_Integer)d, buf); /* below 2^53: exact */
  size_t n = 0;
  if (fabs(d) >= 1e-5 && fabs(d) < 1e16 && (n = decimal_digits(d, 15, buf)) == 0)
    n = decimal_digits(d, 17, buf);
  if (n != 0) return n;
  n = (size_t)snprintf(buf, 64, "%.15g", d); /* far out of the range above: rare */
  return strtod(buf, NULL) == d ? n : (size_t)snprintf(buf, 64, "%.17g", d);
}

/* ---- arrays: Postgres array text format ---------------------------------- */

typedef struct array_parser {
  const char *p, *end;
  int decoder; /* stack index of the element decoder, 0 for none */
} array_parser;

static void skip_space(array_parser *a) {
  while (a->p < a->end && (*a->p == ' ' || *a->p == '\t' || *a->p == '\n')) a->p++;
}

static void decode_element(lua_State *L, array_parser *a) {
  if (a->decoder == 0) return;
  lua_pushvalue(L, a->decoder);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
}

static int parse_list(lua_State *L, array_parser *a, int depth);

/* "quoted \"with\" escapes": pushes the unescaped text. */
static int parse_quoted(lua_State *L, array_parser *a) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (a->p++; a->p < a->end && *a->p != '"'; a->p++) {
    if (*a->p == '\\' && ++a->p == a->end) return -1;
    luaL_addchar(&b, *a->p);
  }
  if (a->p == a->end) return -1;
  a->p++;
  luaL_pushresult(&b);
  return 0;
}

static int parse_element(lua_State *L, array_parser *a, int depth) {
  skip_space(a);
  if (a->p == a->end) return -1;
  if (*a->p == '{') return parse_list(L, a, depth + 1);
  if (*a->p == '"') {
    if (parse_quoted(L, a) != 0) return -1;
    decode_element(L, a);
    return 0;
  }
  const char *start = a->p;
  while (a->p < a->end && *a->p != ',' && *a->p != '}') a->p++;
  size_t n = (size_t)(a->p - start);
  while (n > 0 && start[n - 1] == ' ') n--;
  if (n == 0) return -1;
  if (n == 4 && strncasecmp(start, "NULL", 4) == 0) {
    mc_pushnull(L);
    return 0;
  }
  lua_pushlstring(L, start, n);
  decode_element(L, a);
  return 0;
}

/* {elem,elem,...} at a->p: pushes a Lua array. */
static int parse_list(lua_State *L, array_parser *a, int depth) {
  if (depth > ARRAY_MAX_DEPTH || a->p == a->end || *a->p != '{') return -1;
  luaL_checkstack(L, 6, "array nested too deep");
  a->p++;
  lua_newtable(L);
  skip_space(a);
  if (a->p < a->end && *a->p == '}') {
    a->p++;
    return 0;
  }
  for (lua_Integer n = 1;; n++) {
    if (parse_element(L, a, depth) != 0) return -1;
    lua_rawseti(L, -2, n);
    skip_space(a);
    if (a->p == a->end) return -1;
    if (*a->p++ == '}') return 0;
    if (a->p[-1] != ',') return -1;
  }
}

/* pg.parse_array(text[, decoder]) -> nested array (elements decoded, NULL as
 * mc.null) | nil when text is not an array literal. */
int mc_pg_parse_array(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  array_parser a = {s, s + len, 0};
  if (!lua_isnoneornil(L, 2)) a.decoder = 2;
  if (a.p < a.end && *a.p == '[') { /* "[0:1]={...}": bounds other than 1 */
    const char *eq = memchr(a.p, '=', len);
    if (eq == NULL) return 0;
    a.p = eq + 1;
  }
  int top = lua_gettop(L);
  if (parse_list(L, &a, 1) != 0 || (skip_space(&a), a.p != a.end)) {
    lua_settop(L, top);
    lua_pushnil(L);
  }
  return 1;
}
