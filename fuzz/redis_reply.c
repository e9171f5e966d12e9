/* redis_reply.c -- the libFuzzer harness for the Redis reply conversion: the
 * input is fed, as bytes off a socket would be, to hiredis's reader, and every
 * reply it yields is pushed into Lua by core/redis.c's own push_reply. The file
 * is included, not linked, to reach its static functions without widening its
 * interface (the build links every other core object, not redis.o).
 *
 * Checked: no sanitizer finding; a reply pushes exactly one value; a nesting
 * deeper than the Lua stack allows raises "reply nested too deeply" (an
 * error, not a crash); an array becomes a sequence of its length. */
#include "../core/redis.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int push_one(lua_State *L) {
  push_reply(L, lua_touserdata(L, 1));
  return 1;
}

/* Counts what push_reply made of r against r itself; aborts on a mismatch. */
static void check(lua_State *L, const redisReply *r) {
  int t = lua_type(L, -1);
  int want = r->type == REDIS_REPLY_ARRAY || r->type == REDIS_REPLY_ERROR ? LUA_TTABLE
             : r->type == REDIS_REPLY_INTEGER                             ? LUA_TNUMBER
             : r->type == REDIS_REPLY_NIL                                 ? LUA_TLIGHTUSERDATA
                                                                          : LUA_TSTRING;
  if (t != want) abort();
  if (r->type == REDIS_REPLY_ARRAY && luaL_len(L, -1) != (lua_Integer)r->elements) abort();
  if (want == LUA_TSTRING && luaL_len(L, -1) != (lua_Integer)r->len) abort();
}

/* hiredis 0.14 allocates an array's slots as soon as it reads the count:
 * "*1555555555\r\n" asks calloc for 12 GB, which the fuzzer found as a
 * time-out. core/redis.c's reader (redisReaderCreate) has the same exposure to
 * a hostile server, reported, not fixed here; the harness refuses counts past
 * MAX_ELEMENTS as hiredis refuses a failed allocation (the reader's "Out of
 * memory"), so that the fuzzer spends its time on the conversion instead. */
#define MAX_ELEMENTS (1 << 20)

static redisReplyObjectFunctions bounded;
static void *(*create_array)(const redisReadTask *, int);

static void *bounded_array(const redisReadTask *task, int elements) {
  return elements > MAX_ELEMENTS ? NULL : create_array(task, elements);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  if (L == NULL && (L = luaL_newstate()) == NULL) abort();
  redisReader *reader = redisReaderCreate();
  if (reader == NULL) abort();
  if (create_array == NULL) {
    bounded = *reader->fn;
    create_array = bounded.createArray;
    bounded.createArray = bounded_array;
  }
  reader->fn = &bounded;
  void *reply = NULL;
  if (redisReaderFeed(reader, (const char *)data, size) != REDIS_OK) goto cleanup;
  while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply != NULL) {
    lua_pushcfunction(L, push_one);
    lua_pushlightuserdata(L, reply);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) check(L, reply);
    else if (strstr(lua_tostring(L, -1), "nested too deeply") == NULL) abort();
    lua_settop(L, 0);
    freeReplyObject(reply);
    reply = NULL;
  }
cleanup:
  redisReaderFree(reader);
  return 0;
}
