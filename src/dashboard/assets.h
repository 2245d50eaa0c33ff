/* The dashboard's web files, embedded at build time as C arrays by
 * cmake/dashboard_assets.cmake (the files in web/, and uPlot from $FEDERATE_DATA/npm). */
#ifndef FEDERATE_DASHBOARD_ASSETS_H
#define FEDERATE_DASHBOARD_ASSETS_H
#include <stddef.h>

typedef struct fed_dash_asset {
    const char *path;           /* URL path, e.g. "/dashboard.js" */
    const char *type;           /* Content-Type */
    const unsigned char *data;
    size_t len;
} fed_dash_asset;

extern const fed_dash_asset fed_dash_assets[];
extern const int fed_dash_nassets;
/* 1 if uPlot was found at build time (otherwise the page says to run scripts/bootstrap.sh). */
extern const int fed_dash_have_uplot;

#endif
