/* xlfs: icecream's client inside the sandbox, preloaded into icecc only (ld.so --preload).
 *
 * icecc sends a remote job to the other machine's iceccd over TCP, but a build's network
 * namespace has only a loopback interface. This connect() hands such a connection to xlfs's
 * relay outside the sandbox instead: a unix socket bound at /xlfs/icecc-relay.socket. The relay
 * connects to the address only if it is an iceccd the scheduler lists, answers "ok", and copies
 * bytes both ways; any other address is refused (ECONNREFUSED) and icecc compiles locally. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define RELAY "/xlfs/icecc-relay.socket"

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    if (!sa || sa->sa_family != AF_INET || len < sizeof(struct sockaddr_in))
        return real(fd, sa, len);
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    char ip[INET_ADDRSTRLEN];
    if (!inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip) || strncmp(ip, "127.", 4) == 0)
        return real(fd, sa, len);
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (u < 0)
        return -1;
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    strncpy(un.sun_path, RELAY, sizeof un.sun_path - 1);
    char hdr[64], ok[3];
    int n = snprintf(hdr, sizeof hdr, "%s:%u\n", ip, (unsigned)ntohs(in->sin_port));
    if (real(u, (const struct sockaddr *)&un, sizeof un) < 0 || write(u, hdr, n) != n
        || read(u, ok, 3) != 3 || memcmp(ok, "ok\n", 3) != 0) {
        close(u);
        errno = ECONNREFUSED;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (dup2(u, fd) < 0) {
        close(u);
        return -1;
    }
    close(u);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl);
    if (fdfl >= 0)
        fcntl(fd, F_SETFD, fdfl);
    return 0;
}
