/* dotenv.c -- the local environment file, as `heroku local` and foreman read
 * it: $MC_ROOT/.env holds NAME=value lines that every command sees, the
 * process's own environment winning. Read once in main(), before any thread
 * starts (setenv is not thread-safe).
 *
 * The format: blank lines and lines starting with # are skipped; an optional
 * `export ` prefix; NAME is [A-Za-z_][A-Za-z0-9_]*; the value runs to the end
 * of the line, trimmed, or is quoted: '...' taken as is, "..." with \n, \", \\
 * escapes. Anything else is an error naming the file and line: a typo in the
 * file that holds the credentials should stop the command, not be guessed at. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dotenv.h"

#define LINE_MAX_LEN 8192

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    s[--n] = '\0';
  return s;
}

/* Unquotes v in place -> v, or NULL when a quote is not closed or text follows it. */
static char *unquote(char *v) {
  char q = v[0];
  if (q != '"' && q != '\'') return v;
  char *out = v, *in = v + 1;
  for (; *in != '\0' && *in != q; in++) {
    if (q == '"' && *in == '\\' && in[1] != '\0') {
      in++;
      *out++ = *in == 'n' ? '\n' : *in;
    } else {
      *out++ = *in;
    }
  }
  if (*in != q || *trim(in + 1) != '\0') return NULL;
  *out = '\0';
  return v;
}

/* One line -> 0 (set, skipped or already in the environment) | -1, *why set. */
static int take_line(char *line, const char **why) {
  char *s = trim(line);
  if (*s == '\0' || *s == '#') return 0;
  if (strncmp(s, "export ", 7) == 0) s = trim(s + 7);
  char *eq = strchr(s, '=');
  if (eq == NULL) {
    *why = "expected NAME=value";
    return -1;
  }
  *eq = '\0';
  char *name = trim(s), *value = trim(eq + 1);
  if (!(isalpha((unsigned char)name[0]) || name[0] == '_')) {
    *why = "a name starts with a letter or _";
    return -1;
  }
  for (const char *p = name; *p; p++) {
    if (!(isalnum((unsigned char)*p) || *p == '_')) {
      *why = "a name holds letters, digits and _ only";
      return -1;
    }
  }
  value = unquote(value);
  if (value == NULL) {
    *why = "a quoted value must close its quote and end the line";
    return -1;
  }
  if (setenv(name, value, 0) != 0) {
    *why = strerror(errno);
    return -1;
  }
  return 0;
}

int mc_dotenv_load(const char *root) {
  char path[4096], line[LINE_MAX_LEN];
  const char *flag = getenv("MC_DOTENV");
  if (flag != NULL && strcmp(flag, "off") == 0) return 0;
  if (snprintf(path, sizeof path, "%s/.env", root) >= (int)sizeof path) return 0;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    if (errno == ENOENT) return 0;
    fprintf(stderr, "multiconnect: %s: %s\n", path, strerror(errno));
    return -1;
  }
  int status = 0, lineno = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    const char *why = NULL;
    lineno++;
    if (strchr(line, '\n') == NULL && !feof(f)) { /* full buffer: the line's end, or more? */
      int c = getc(f);
      if (c != EOF) {
        ungetc(c, f);
        why = "line too long";
      }
    }
    if (why == NULL && take_line(line, &why) == 0) continue;
    fprintf(stderr, "multiconnect: %s:%d: %s\n", path, lineno, why);
    status = -1;
    break;
  }
  fclose(f);
  return status;
}
