#ifndef MC_DOTENV_H
#define MC_DOTENV_H

/* Sets each NAME=value of root/.env that the environment does not already
 * have. 0 when done or when there is no file (or MC_DOTENV=off); -1 after
 * saying on stderr which line of the file is wrong. */
int mc_dotenv_load(const char *root);

#endif
