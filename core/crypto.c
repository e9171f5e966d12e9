/* crypto.c -- mc.crypto_native: the OpenSSL primitives under mc.crypto.
 *
 * Raw building blocks only (AES-256-GCM with explicit key and nonce, HMAC, hashes,
 * random bytes, constant-time compare, hex and base64); the token format, key ids
 * and key rotation are Lua (core/lua/mc/crypto.lua). Output buffers are Lua
 * buffers prepared before any OpenSSL object exists, and each EVP object lives
 * only between calls that cannot raise, so an error never leaks one. */
#include <ctype.h>
#include <limits.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "host.h"

#define GCM_KEY_LEN 32
#define GCM_NONCE_LEN 12
#define GCM_TAG_LEN 16
#define RANDOM_MAX (1 << 20)

/* AES-256-GCM over in -> out (same length); tag read (decrypt) or written
 * (encrypt). Returns 1 on success, 0 on any failure (including a bad tag). */
static int gcm(int encrypt, const unsigned char *key, const unsigned char *nonce,
               const unsigned char *aad, size_t aad_len, const unsigned char *in, size_t in_len,
               unsigned char *out, unsigned char *tag) {
  int ok = 0, len;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL) return 0;
  if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) != 1) goto cleanup;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, GCM_NONCE_LEN, NULL) != 1) goto cleanup;
  if (EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, encrypt) != 1) goto cleanup;
  if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1) goto cleanup;
  if (in_len > 0 && EVP_CipherUpdate(ctx, out, &len, in, (int)in_len) != 1) goto cleanup;
  if (!encrypt && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, tag) != 1)
    goto cleanup;
  if (EVP_CipherFinal_ex(ctx, out + in_len, &len) != 1) goto cleanup; /* bad tag on open */
  if (encrypt && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, tag) != 1)
    goto cleanup;
  ok = 1;
cleanup:
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

static const unsigned char *check_sized(lua_State *L, int arg, size_t want, const char *what) {
  size_t len;
  const char *s = luaL_checklstring(L, arg, &len);
  if (len != want)
    luaL_error(L, "bad argument #%d (%s must be %d bytes, got %d)", arg, what, (int)want, (int)len);
  return (const unsigned char *)s;
}

/* aead_seal(key32, nonce12, plaintext, aad?) -> ciphertext .. tag16 */
static int c_aead_seal(lua_State *L) {
  const unsigned char *key = check_sized(L, 1, GCM_KEY_LEN, "key");
  const unsigned char *nonce = check_sized(L, 2, GCM_NONCE_LEN, "nonce");
  size_t len, aad_len;
  const unsigned char *pt = (const unsigned char *)luaL_checklstring(L, 3, &len);
  const unsigned char *aad = (const unsigned char *)luaL_optlstring(L, 4, "", &aad_len);
  if (len > INT_MAX - GCM_TAG_LEN || aad_len > INT_MAX) return luaL_error(L, "input too large");
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, len + GCM_TAG_LEN);
  if (!gcm(1, key, nonce, aad, aad_len, pt, len, out, out + len))
    return luaL_error(L, "AES-256-GCM encryption failed");
  luaL_pushresultsize(&b, len + GCM_TAG_LEN);
  return 1;
}

/* aead_open(key32, nonce12, ciphertext .. tag16, aad?) -> plaintext | nil, "invalid token" */
static int c_aead_open(lua_State *L) {
  const unsigned char *key = check_sized(L, 1, GCM_KEY_LEN, "key");
  const unsigned char *nonce = check_sized(L, 2, GCM_NONCE_LEN, "nonce");
  size_t len, aad_len;
  const unsigned char *in = (const unsigned char *)luaL_checklstring(L, 3, &len);
  const unsigned char *aad = (const unsigned char *)luaL_optlstring(L, 4, "", &aad_len);
  if (len < GCM_TAG_LEN || len > INT_MAX || aad_len > INT_MAX) {
    luaL_pushfail(L);
    lua_pushliteral(L, "invalid token");
    return 2;
  }
  size_t pt_len = len - GCM_TAG_LEN;
  unsigned char tag[GCM_TAG_LEN];
  memcpy(tag, in + pt_len, GCM_TAG_LEN);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, pt_len + 1);
  if (!gcm(0, key, nonce, aad, aad_len, in, pt_len, out, tag)) {
    OPENSSL_cleanse(out, pt_len); /* release no plaintext of a forged token */
    luaL_pushfail(L);
    lua_pushliteral(L, "invalid token");
    return 2;
  }
  luaL_pushresultsize(&b, pt_len);
  return 1;
}

/* hmac_sha256(key, msg) -> 32 raw bytes */
static int c_hmac_sha256(lua_State *L) {
  size_t klen, mlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *msg = luaL_checklstring(L, 2, &mlen);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (klen > INT_MAX) return luaL_error(L, "input too large"); /* HMAC takes an int */
  if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, md, &mdlen) == NULL)
    return luaL_error(L, "HMAC-SHA256 failed");
  lua_pushlstring(L, (const char *)md, mdlen);
  return 1;
}

static int digest(lua_State *L, const EVP_MD *md) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  if (EVP_Digest(s, len, out, &outlen, md, NULL) != 1) return luaL_error(L, "digest failed");
  lua_pushlstring(L, (const char *)out, outlen);
  return 1;
}

static int c_sha256(lua_State *L) {
  return digest(L, EVP_sha256());
}
static int c_sha1(lua_State *L) {
  return digest(L, EVP_sha1());
}

/* random(n) -> n bytes from OpenSSL's CSPRNG | nil, err */
static int c_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= RANDOM_MAX, 1, "must be in 0..1048576");
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n + 1);
  if (n > 0 && RAND_bytes(out, (int)n) != 1) {
    luaL_pushfail(L);
    lua_pushliteral(L, "no randomness available");
    return 2;
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* equal(a, b) -> boolean, in time independent of where they differ */
static int c_equal(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

/* ---- hex and base64 ------------------------------------------------------- */

static int c_to_hex(lua_State *L) {
  static const char digits[] = "0123456789abcdef";
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, 2 * len + 1);
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[s[i] >> 4];
    out[2 * i + 1] = digits[s[i] & 15];
  }
  luaL_pushresultsize(&b, 2 * len);
  return 1;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int c_from_hex(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (len % 2 != 0) goto bad;
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len / 2 + 1);
  for (size_t i = 0; i < len; i += 2) {
    int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
    if (hi < 0 || lo < 0) goto bad;
    out[i / 2] = (char)(hi << 4 | lo);
  }
  luaL_pushresultsize(&b, len / 2);
  return 1;
bad:
  luaL_pushfail(L);
  lua_pushliteral(L, "invalid hex");
  return 2;
}

/* to_base64(s, url?) -> standard base64 with padding, or url-safe without */
static int c_to_base64(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  int url = lua_toboolean(L, 2);
  if (len > (size_t)INT_MAX / 4 * 3) return luaL_error(L, "input too large");
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, 4 * ((len + 2) / 3) + 1);
  size_t n = (size_t)EVP_EncodeBlock((unsigned char *)out, s, (int)len);
  if (url) {
    while (n > 0 && out[n - 1] == '=') n--;
    for (size_t i = 0; i < n; i++) out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
  }
  luaL_pushresultsize(&b, n);
  return 1;
}

/* from_base64(s, url?) -> bytes | nil, "invalid base64". Strict: no whitespace,
 * standard alphabet with padding, or (url) the url-safe one with optional padding. */
static int c_from_base64(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int url = lua_toboolean(L, 2);
  if (len > (size_t)INT_MAX / 2) return luaL_error(L, "input too large");
  luaL_Buffer b;
  size_t padded = (len + 3) / 4 * 4;
  char *work = luaL_buffinitsize(L, &b, padded + padded / 4 * 3 + 1);
  size_t pad = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (url && (c == '+' || c == '/')) goto bad;
    if (url) c = c == '-' ? '+' : c == '_' ? '/' : c;
    if (!isalnum((unsigned char)c) && c != '+' && c != '/' && c != '=') goto bad;
    if (c == '=') pad++;
    else if (pad > 0) goto bad; /* data after padding */
    work[i] = c;
  }
  if (pad > 2 || (!url && len % 4 != 0)) goto bad;
  for (size_t i = len; i < padded; i++, pad++) work[i] = '=';
  if (pad > 2) goto bad;
  unsigned char *out = (unsigned char *)work + padded;
  int n = padded ? EVP_DecodeBlock(out, (unsigned char *)work, (int)padded) : 0;
  if (n < 0) goto bad;
  memmove(work, out, (size_t)n - pad);
  luaL_pushresultsize(&b, (size_t)n - pad);
  return 1;
bad:
  luaL_pushfail(L);
  lua_pushliteral(L, "invalid base64");
  return 2;
}

int luaopen_mc_crypto_native(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"aead_seal", c_aead_seal},
    {"aead_open", c_aead_open},
    {"hmac_sha256", c_hmac_sha256},
    {"sha256", c_sha256},
    {"sha1", c_sha1},
    {"random", c_random},
    {"equal", c_equal},
    {"to_hex", c_to_hex},
    {"from_hex", c_from_hex},
    {"to_base64", c_to_base64},
    {"from_base64", c_from_base64},
    {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  lua_pushinteger(L, GCM_NONCE_LEN);
  lua_setfield(L, -2, "NONCE_LEN");
  lua_pushinteger(L, GCM_KEY_LEN);
  lua_setfield(L, -2, "KEY_LEN");
  return 1;
}
