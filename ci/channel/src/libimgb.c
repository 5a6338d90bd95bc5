/* libimgb: a tiny shared library for the imgbuild test channel.
 *
 * IMGB_PREFIX is the build-time prefix (a long conda-build-style placeholder). It sits in the
 * binary as a NUL-terminated string, so installing the package exercises *binary* prefix
 * replacement: the installer overwrites the placeholder with the real prefix and pads the
 * rest of the string with NUL bytes.
 */
#ifndef IMGB_PREFIX
#error "compile with -DIMGB_PREFIX=\"...\""
#endif

static const char imgb_prefix[] = IMGB_PREFIX;

const char *imgb_prefix_get(void) { return imgb_prefix; }

const char *imgb_version(void) { return "1.0"; }
