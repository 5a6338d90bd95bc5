/* imgb-cli: prints what prefix replacement did to libimgb (binary) and etc/imgb.conf (text).
 *
 * Output, one "key=value" per line:
 *   prefix=<the prefix string compiled into libimgb.so, after binary replacement>
 *   conf=<each line of <exe dir>/../etc/imgb.conf, after text replacement>
 *   version=<libimgb version>
 * Exit code 0, or 2 when etc/imgb.conf cannot be read.
 */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern const char *imgb_prefix_get(void);
extern const char *imgb_version(void);

int main(void) {
    char exe[PATH_MAX], conf[PATH_MAX + 32], line[4096];
    ssize_t n;
    FILE *f;

    printf("prefix=%s\n", imgb_prefix_get());
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) {
        printf("conf=<cannot read /proc/self/exe>\n");
        return 2;
    }
    exe[n] = '\0';
    snprintf(conf, sizeof conf, "%s/../etc/imgb.conf", dirname(exe));
    f = fopen(conf, "r");
    if (!f) {
        printf("conf=<missing %s>\n", conf);
        return 2;
    }
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        printf("conf=%s\n", line);
    }
    fclose(f);
    printf("version=%s\n", imgb_version());
    return 0;
}
