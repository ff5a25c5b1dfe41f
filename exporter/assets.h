/*
 * assets.h — the analyst page's static files, embedded in the binary at build
 * time (cmake/embed_assets.cmake generates page_assets.c from exporter/page/).
 *
 * The table is immutable and lives for the whole process: any thread may
 * read it. Paths are absolute URL paths: "/" is index.html, the others are
 * "/static/<file name>". data is NOT NUL-terminated; len is its size.
 */
#ifndef TW_ASSETS_H
#define TW_ASSETS_H

#include <stddef.h>

typedef struct tw_asset {
    const char *path;          /* "/", "/static/app.js", ... */
    const char *content_type;  /* e.g. "text/html; charset=utf-8" */
    const unsigned char *data;
    size_t len;
} tw_asset_t;

extern const tw_asset_t tw_page_assets[];
extern const size_t tw_page_nassets;

#endif
