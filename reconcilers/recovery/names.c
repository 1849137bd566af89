/* names.c — derived names (see names.h). */
#include "reconcilers/recovery/names.h"

#include <stdio.h>
#include <string.h>

#include "reconcilers/extauth/extauth.h"

#define DNS_SUBDOMAIN_MAX 253

km_status km_names_backup(const char *recovery, char *buf, size_t n, km_err *err)
{
    int len = snprintf(buf, n, "%s%s", KM_EXTAUTH_BACKUP_PREFIX, recovery);
    if (len < 0 || (size_t)len >= n || len > DNS_SUBDOMAIN_MAX) {
        if (n)
            buf[0] = '\0';
        return km_err_set(err, KM_EINVAL,
                          "metadata.name: %zu characters, at most %d: the backup ConfigMap "
                          "\"%s<name>\" of the extensionApiserverAuthentication step must fit "
                          "in %d",
                          strlen(recovery), KM_NAMES_MAX_RECOVERY, KM_EXTAUTH_BACKUP_PREFIX,
                          DNS_SUBDOMAIN_MAX);
    }
    return KM_OK;
}

km_status km_names_check(const char *recovery, km_err *err)
{
    char buf[DNS_SUBDOMAIN_MAX + 2];
    return km_names_backup(recovery, buf, sizeof(buf), err);
}
