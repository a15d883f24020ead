/* Compiled and run by tests/c_api.rs: the header compiles warning-free, its layouts match the
 * library's, and the calls that need no vboxguest driver behave as documented. */
#include "vmmdev_guest.h"

#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(vmmdev_guest_hgcm_param) == 24, "vmmdev_guest_hgcm_param layout");
_Static_assert(sizeof(vmmdev_guest_prop_change) == 32, "vmmdev_guest_prop_change layout");

#define CHECK(condition)                                                                         \
    do {                                                                                         \
        if (!(condition)) {                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition);        \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)

int main(void)
{
    vmmdev_guest *session = NULL;
    char message[256];
    uint32_t client = 0;
    char *value = NULL;
    vmmdev_guest_prop_change change;
    vmmdev_guest_hgcm_param param = {VMMDEV_GUEST_HGCM_PARAM_OUT, 8, 0, NULL};

    CHECK(vmmdev_guest_open("/dev/vboxguest-missing", &session) == VMMDEV_GUEST_E_NO_DRIVER);
    CHECK(session == NULL);
    CHECK(vmmdev_guest_last_error(message, sizeof message) > 0);
    CHECK(strstr(message, "/dev/vboxguest-missing") != NULL);

    /* Not a vboxguest node: the version handshake fails. */
    CHECK(vmmdev_guest_open("/dev/null", &session) == VMMDEV_GUEST_E_FAILED);
    CHECK(session == NULL);

    CHECK(vmmdev_guest_open(NULL, NULL) == VMMDEV_GUEST_E_INVALID_ARGUMENT);
    CHECK(vmmdev_guest_hgcm_connect(NULL, VMMDEV_GUEST_PROP_SERVICE, &client) ==
          VMMDEV_GUEST_E_INVALID_ARGUMENT);
    CHECK(vmmdev_guest_hgcm_call(NULL, 1, 1, &param, 1, VMMDEV_GUEST_TIMEOUT_INFINITE, NULL) ==
          VMMDEV_GUEST_E_INVALID_ARGUMENT);
    CHECK(vmmdev_guest_prop_get(NULL, 1, "/Test", &value, NULL, NULL) ==
          VMMDEV_GUEST_E_INVALID_ARGUMENT);
    CHECK(value == NULL);
    CHECK(vmmdev_guest_prop_set(NULL, 1, "/Test", "v", VMMDEV_GUEST_PROP_F_TRANSIENT) ==
          VMMDEV_GUEST_E_INVALID_ARGUMENT);
    CHECK(vmmdev_guest_prop_delete(NULL, 1, "/Test") == VMMDEV_GUEST_E_INVALID_ARGUMENT);
    CHECK(vmmdev_guest_prop_wait(NULL, 1, "", 0, 10, &change) == VMMDEV_GUEST_E_INVALID_ARGUMENT);
    CHECK(vmmdev_guest_last_error(NULL, 0) == strlen("session is NULL"));

    vmmdev_guest_close(NULL);
    vmmdev_guest_string_free(NULL);
    vmmdev_guest_prop_change_clear(NULL);
    puts("ok");
    return 0;
}
