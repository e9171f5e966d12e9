# multiconnect -- see README.md. `make` builds bin/multiconnect; `make asan` the
# ASan+UBSan twin; `make test` runs lint and every spec with both; `make lint` the
# static checks alone (tools/lint); `make dev` runs locally;
# `make image-check` proves the container build (Dockerfile) in clean Debian 12 roots;
# `make fuzz-replay` replays fuzz/corpus/ through the libFuzzer harnesses (make test
# runs it, then fuzzes each target FUZZ_SECONDS, 15 by default: tools/test); `make
# soak` fuzzes each target FUZZ_SECONDS (60 here) and runs the long chaos cases.

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

.PHONY: all asan setup deps lint test dev clean services-start services-stop image-check fuzz fuzz-replay soak
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

# libFuzzer harnesses (fuzz/): the core built by clang with coverage and ASan+UBSan.
# bin/fuzz-lua runs fuzz/targets/$$FUZZ_TARGET.lua; bin/fuzz-redis-reply includes
# core/redis.c (its static reply conversion), so it links every object but redis.o.
FUZZ_CC   := clang
FUZZ_SAN  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJ  := $(filter-out build/fuzz/main.o,$(SRC:core/%.c=build/fuzz/%.o)) build/fuzz/embedded.o
FUZZ_BINS := bin/fuzz-lua bin/fuzz-redis-reply

fuzz: $(FUZZ_BINS)
# static pattern rules: explicit, so that `make -p` shows their `| deps` (makefile_spec)
$(filter-out build/fuzz/embedded.o,$(FUZZ_OBJ)): build/fuzz/%.o: core/%.c | deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(DEPFLAGS) $(PKG_CFLAGS) -Icore -c -o $@ $<
build/fuzz/embedded.o: build/embedded.c | deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -Icore -c -o $@ $<
build/fuzz/harness_lua_target.o build/fuzz/harness_redis_reply.o: build/fuzz/harness_%.o: fuzz/%.c | deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(DEPFLAGS) $(PKG_CFLAGS) -Icore -c -o $@ $<
bin/fuzz-lua: build/fuzz/harness_lua_target.o $(FUZZ_OBJ) | deps
	@mkdir -p bin
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lm
bin/fuzz-redis-reply: build/fuzz/harness_redis_reply.o $(filter-out build/fuzz/redis.o,$(FUZZ_OBJ)) | deps
	@mkdir -p bin
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lm

fuzz-replay: $(FUZZ_BINS)
	@tools/fuzz replay

FUZZ_SECONDS ?= 60
soak: $(FUZZ_BINS) bin/multiconnect bin/multiconnect-asan
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tools/fuzz run
	@MC_SOAK=1 tools/test spec/chaos

lint: | deps
	@tools/lint

test: bin/multiconnect bin/multiconnect-asan $(FUZZ_BINS)
	@tools/test

dev: bin/multiconnect
	@tools/dev

image-check:
	@tools/image/check

clean:
	rm -rf build bin

-include $(OBJ:.o=.d) $(ASAN_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d)
