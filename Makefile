# multiconnect -- see README.md. `make` builds bin/multiconnect; `make asan` the
# ASan+UBSan twin; `make test` runs lint and every spec with both; `make lint` the
# static checks alone (tools/lint); `make dev` runs locally;
# `make image-check` proves the container build (Dockerfile) in clean Debian 12 roots.

PKGS     := lua5.4 lua5.4-cjson libmicrohttpd libpq hiredis libcurl openssl readline
WARN     := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
DEPFLAGS := -MMD -MP
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))

SRC      := $(wildcard core/*.c)
LUA_SRC  := $(shell find core/lua -name '*.lua' | LC_ALL=C sort)
ASAN     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

OBJ      := $(SRC:core/%.c=build/normal/%.o) build/normal/embedded.o
ASAN_OBJ := $(SRC:core/%.c=build/asan/%.o) build/asan/embedded.o

.PHONY: all asan setup deps lint test dev clean services-start services-stop image-check
all: bin/multiconnect

# The build, test and dev targets first make sure the Debian packages are there
# (tools/setup installs what is missing and is silent when nothing is). Every
# rule that compiles has `| deps`: under -j a rule without it races the install.
# SETUP_GROUPS limits it (the container build: SETUP_GROUPS="build libraries").
SETUP_GROUPS ?=
deps:
	@tools/setup --quiet $(SETUP_GROUPS)

setup:
	@tools/setup

bin/multiconnect: $(OBJ) | deps
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(PKG_LIBS) -lm

asan: bin/multiconnect-asan
bin/multiconnect-asan: $(ASAN_OBJ) | deps
	@mkdir -p bin
	$(CC) $(ASAN) -o $@ $(ASAN_OBJ) $(PKG_LIBS) -lm

build/embedded.c: $(LUA_SRC) tools/embed-lua | deps
	@mkdir -p build
	tools/embed-lua $@ $(LUA_SRC)

build/normal/%.o: core/%.c | deps
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) $(DEPFLAGS) $(PKG_CFLAGS) -Icore -c -o $@ $<
build/normal/embedded.o: build/embedded.c | deps
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) $(PKG_CFLAGS) -Icore -c -o $@ $<

build/asan/%.o: core/%.c | deps
	@mkdir -p $(@D)
	$(CC) $(WARN) $(ASAN) $(DEPFLAGS) $(PKG_CFLAGS) -Icore -c -o $@ $<
build/asan/embedded.o: build/embedded.c | deps
	@mkdir -p $(@D)
	$(CC) $(WARN) $(ASAN) $(PKG_CFLAGS) -Icore -c -o $@ $<

lint: | deps
	@tools/lint

test: bin/multiconnect bin/multiconnect-asan
	@tools/test

dev: bin/multiconnect
	@tools/dev

image-check:
	@tools/image/check

clean:
	rm -rf build bin

-include $(OBJ:.o=.d) $(ASAN_OBJ:.o=.d)
