# The image Heroku builds from heroku.yml. Each stage runs one script, so
# `make image-check` can run the very same steps in clean Debian 12 roots
# (no image registry is reachable from CI).

# Build: the compiler and -dev packages; leaves build/image/app.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN tools/image/build

# Run: only the runtime libraries, the binary, scripts/, sql/ and mappings/.
FROM debian:12
COPY tools/image/runtime /usr/local/sbin/multiconnect-runtime
RUN /usr/local/sbin/multiconnect-runtime && rm /usr/local/sbin/multiconnect-runtime
COPY --from=build /src/build/image/app /app
WORKDIR /app
# nothing edits a slug's scripts; `heroku run multiconnect console` finds the binary
ENV MC_RELOAD=0 PATH=/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER app
CMD ["bin/multiconnect", "web"]
