/* tortie's compiled thin CNI client (issue 18): the same wire format as
 * tortie/cni/thin.py, without an interpreter start per call.
 *
 *   request  "tortie-cni/1 <ipam|main>\n" + environment as "KEY=VALUE\0" entries
 *            + "\0" + stdin
 *   answer   "<exit code> <length>\n" + that many bytes of stdout
 *
 * Socket: $TORTIE_CNI_SOCKET if set ("" or "none": never the service), else
 * $TORTIE_RUN_DIR/cni.sock, else the socket baked in by `tortie install-cni`.
 * The plugin is chosen by argv[0]: a name ending in "-ipam" is the IPAM plugin,
 * anything else the main plugin.
 *
 * No service there (connect fails: no socket file, nobody listening, not
 * allowed): exec the Python plugin in-process, stdin untouched, exactly as the
 * Python thin client runs it.  Connected but no complete answer (cut off,
 * garbled, too large, timed out): CNI error 11 "try again later", exit 1.
 *
 * libc only.  Every read is bounded; no environment or payload byte is ever
 * used as a format string (there is no printf at all).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAGIC "tortie-cni/1 "
#define SOCKET_NAME "cni.sock"       /* tortie.rundir.RunDir.cni_socket */
#define CONNECT_TIMEOUT_S 5          /* a full backlog: give up after this */
#define IO_TIMEOUT_S 300             /* thin.TIMEOUT: longer than any ADD */
#define MAX_ANSWER (1u << 20)        /* bytes of stdout accepted from the service */
#define MAX_STDIN ((1u << 20) + 1)   /* tortie.cni.service.MAX_REQUEST + 1: the
                                        service refuses anything larger anyway */
#define MAX_HEAD 24                  /* "<code> <length>\n": ample for both */
#define TRY_AGAIN_LATER 11
#define INTERNAL_ERROR 999
#define CONFIG_SIZE 4096

/* Written by `tortie install-cni` (tortie/cni/install.py): after the marker,
 * "socket=PATH\0python=PATH\0root=DIR\0" entries, the rest zero. */
#define CONFIG_MARKER "@@TORTIE-CNI-CONFIG-1@@"
__attribute__((used)) char tortie_cni_config[CONFIG_SIZE] = CONFIG_MARKER;

extern char **environ;

struct buf {
    char *data;
    size_t len, cap;
};

static int buf_put(struct buf *b, const void *src, size_t n)
{
    if (n > b->cap - b->len) {
        size_t want = b->cap ? b->cap : 4096;
        while (want - b->len < n) {
            if (want > ((size_t)-1) / 2)
                return -1;
            want *= 2;
        }
        char *grown = realloc(b->data, want);
        if (!grown)
            return -1;
        b->data = grown;
        b->cap = want;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static int buf_str(struct buf *b, const char *s) { return buf_put(b, s, strlen(s)); }

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static const char *config_value(const char *key)
{
    size_t klen = strlen(key);
    size_t i = sizeof(CONFIG_MARKER);
    tortie_cni_config[CONFIG_SIZE - 1] = '\0';  /* every entry ends inside */
    while (i < CONFIG_SIZE - 1 && tortie_cni_config[i] != '\0') {
        const char *entry = tortie_cni_config + i;
        size_t elen = strlen(entry);
        if (elen > klen && entry[klen] == '=' && memcmp(entry, key, klen) == 0)
            return entry + klen + 1;
        i += elen + 1;
    }
    return NULL;
}

/* The request's cniVersion, read like thin._cni_version (no JSON parser). */
static void cni_version(const char *in, size_t n, char out[32])
{
    static const char key[] = "\"cniVersion\"";
    const char *p = memmem(in, n, key, sizeof(key) - 1);
    strcpy(out, "1.1.0");
    if (!p)
        return;
    const char *end = in + n;
    p += sizeof(key) - 1;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ':'))
        p++;
    if (p >= end || *p != '"')
        return;
    const char *v = ++p;
    int digits = 0;
    while (p < end && *p != '"') {
        if (*p >= '0' && *p <= '9')
            digits++;
        else if (*p != '.')
            return;
        p++;
    }
    if (p >= end || !digits || (size_t)(p - v) >= 32)
        return;
    memcpy(out, v, (size_t)(p - v));
    out[p - v] = '\0';
}

/* Append s as the inside of a JSON string: quotes, backslashes and control
 * characters escaped, bytes outside ASCII shown as '?' (always valid JSON). */
static int json_text(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        int r;
        if (c == '"' || c == '\\') {
            char two[2] = {'\\', (char)c};
            r = buf_put(b, two, 2);
        } else if (c < 0x20) {
            r = buf_put(b, esc, 6);
        } else {
            char one = c < 0x80 ? (char)c : '?';
            r = buf_put(b, &one, 1);
        }
        if (r)
            return -1;
    }
    return 0;
}

/* Print one CNI error (one line of JSON) and return the plugin's exit code 1.
 * The message is "<what> <path><why>". */
static int cni_error(int code, const char *stdin_data, size_t stdin_len, const char *what,
                     const char *path, const char *why, const char *details)
{
    char version[32], num[12];
    struct buf b = {0};
    int n = code, i = (int)sizeof(num) - 1;
    num[i] = '\0';
    do {
        num[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n && i > 0);
    cni_version(stdin_data, stdin_len, version);
    if (buf_str(&b, "{\"cniVersion\": \"") || buf_str(&b, version) ||
        buf_str(&b, "\", \"code\": ") || buf_str(&b, num + i) || buf_str(&b, ", \"msg\": \"") ||
        json_text(&b, what) || json_text(&b, path) || json_text(&b, why) ||
        buf_str(&b, "\", \"details\": \"") || json_text(&b, details) || buf_str(&b, "\"}\n")) {
        static const char oom[] =
            "{\"cniVersion\": \"1.1.0\", \"code\": 11, \"msg\": \"out of memory\"}\n";
        write_all(1, oom, sizeof(oom) - 1);
        return 1;
    }
    write_all(1, b.data, b.len);
    free(b.data);
    return 1;
}

static const char RETRY_DETAILS[] =
    "the node service did not finish the call; it rolls back or the next call repairs it";

/* Run the plugin here: the Python plugin, which reads stdin itself. */
static int fallback(int ipam)
{
    const char *python = config_value("python");
    const char *root = config_value("root");
    const char *code = ipam
        ? "import sys;sys.path.insert(0,sys.argv[1]);"
          "from tortie.cni.ipam_main import main;sys.exit(main())"
        : "import sys;sys.path.insert(0,sys.argv[1]);"
          "from tortie.cni.plugin_main import main;sys.exit(main())";
    if (python && root) {
        char *argv[] = {(char *)python, "-I", "-S", "-c", (char *)code, (char *)root, NULL};
        execve(python, argv, environ);
    }
    return cni_error(INTERNAL_ERROR, "", 0, "no node service answers and the Python plugin ",
                     python ? python : "(none configured)",
                     python ? " cannot be started" : "",
                     "reinstall the plugins with tortie install-cni");
}

static const char *socket_path(struct buf *space)
{
    const char *explicit = getenv("TORTIE_CNI_SOCKET");
    if (explicit)
        return (*explicit == '\0' || strcmp(explicit, "none") == 0) ? NULL : explicit;
    const char *run_dir = getenv("TORTIE_RUN_DIR");
    if (run_dir && *run_dir) {
        if (buf_str(space, run_dir) || buf_str(space, "/" SOCKET_NAME) || buf_put(space, "", 1))
            return NULL;
        return space->data;
    }
    return config_value("socket");
}

static void set_timeout(int fd, int option, int seconds)
{
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, option, &tv, sizeof(tv));
}

/* A connected socket; -1 when nobody serves there (run here); -2 when the
 * service exists but did not accept within CONNECT_TIMEOUT_S. */
static int connect_service(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(addr.sun_path))
        return -1; /* thin.py: the connect fails, so the plugin runs here */
    memcpy(addr.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* A Unix stream connect waits for room in the backlog for SO_SNDTIMEO. */
    set_timeout(fd, SO_SNDTIMEO, CONNECT_TIMEOUT_S);
    int r;
    do
        r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int timed_out = errno == EAGAIN || errno == ETIMEDOUT;
        close(fd);
        return timed_out ? -2 : -1;
    }
    set_timeout(fd, SO_SNDTIMEO, IO_TIMEOUT_S);
    set_timeout(fd, SO_RCVTIMEO, IO_TIMEOUT_S);
    return fd;
}

static size_t read_stdin(char *data, size_t cap)
{
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(0, data + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    return n;
}

/* "<code> <length>\n" → code 0-255 and length; -1 for anything else. */
static int parse_head(const char *head, size_t n, int *code, size_t *length)
{
    size_t i = 0;
    int c = 0, digits = 0;
    for (; i < n && head[i] >= '0' && head[i] <= '9'; i++, digits++) {
        c = c * 10 + (head[i] - '0');
        if (c > 255)
            return -1;
    }
    if (!digits || i >= n || head[i++] != ' ')
        return -1;
    size_t len = 0;
    digits = 0;
    for (; i < n && head[i] >= '0' && head[i] <= '9'; i++, digits++) {
        len = len * 10 + (size_t)(head[i] - '0');
        if (len > MAX_ANSWER)
            return -2;
    }
    if (!digits || i + 1 != n || head[i] != '\n')
        return -1;
    *code = c;
    *length = len;
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *name = argv[0] ? argv[0] : "";
    const char *slash = strrchr(name, '/');
    name = slash ? slash + 1 : name;
    size_t nlen = strlen(name);
    int ipam = nlen >= 5 && strcmp(name + nlen - 5, "-ipam") == 0;

    struct buf space = {0};
    const char *path = socket_path(&space);
    if (!path)
        return fallback(ipam);
    int fd = connect_service(path);
    if (fd == -1)
        return fallback(ipam);

    signal(SIGPIPE, SIG_IGN);
    char *in = malloc(MAX_STDIN);
    if (!in)
        return cni_error(TRY_AGAIN_LATER, "", 0, "out of memory", "", "", "");
    size_t in_len = read_stdin(in, MAX_STDIN);
    if (fd == -2)
        return cni_error(TRY_AGAIN_LATER, in, in_len, "node service at ", path,
                         " did not accept the call within 5 s (busy or stalled)", RETRY_DETAILS);

    /* The request in one buffer: header, environment, stdin. */
    struct buf req = {0};
    int bad = buf_str(&req, MAGIC) || buf_str(&req, ipam ? "ipam\n" : "main\n");
    for (char **e = environ; e && *e && !bad; e++)
        if (strchr(*e, '=') && **e != '=')
            bad = buf_put(&req, *e, strlen(*e) + 1);
    bad = bad || buf_put(&req, "", 1) || buf_put(&req, in, in_len);
    if (bad)
        return cni_error(TRY_AGAIN_LATER, in, in_len, "out of memory building the request for ",
                         path, "", RETRY_DETAILS);
    for (size_t sent = 0; sent < req.len;) {
        ssize_t w = send(fd, req.data + sent, req.len - sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* the service may have answered already (e.g. refused it) */
        sent += (size_t)w;
    }
    shutdown(fd, SHUT_WR);

    /* The answer: a bounded header, then at most MAX_ANSWER bytes and EOF. */
    static char answer[MAX_HEAD + MAX_ANSWER + 1];
    size_t got = 0, head_end = 0, want = MAX_HEAD;
    int code = 0, fault = 0, status = 0;
    size_t length = 0;
    for (;;) {
        ssize_t r = recv(fd, answer + got, want - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fault = errno;
            break;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (!head_end) {
            char *nl = memchr(answer, '\n', got);
            if (nl) {
                head_end = (size_t)(nl - answer) + 1;
                status = parse_head(answer, head_end, &code, &length);
                if (status)
                    break;
                want = head_end + length + 1; /* one more: bytes after it are garbage */
                if (got >= want)
                    break; /* more than the header announced, in the first read */
            } else if (got == want) {
                status = -1;
                break;
            }
        } else if (got == want) {
            break; /* more than the header announced */
        }
    }
    close(fd);
    if (status == -2)
        return cni_error(TRY_AGAIN_LATER, in, in_len, "node service at ", path,
                         " announced an answer larger than 1 MiB; refused", RETRY_DETAILS);
    int complete = head_end && !status && got == head_end + length;
    if (!complete && fault == EAGAIN)
        return cni_error(TRY_AGAIN_LATER, in, in_len, "node service at ", path,
                         " did not answer within 300 s", RETRY_DETAILS);
    if (!complete && (status || (head_end && got > head_end + length)))
        return cni_error(TRY_AGAIN_LATER, in, in_len, "node service at ", path,
                         " sent a malformed answer", RETRY_DETAILS);
    if (!complete)
        return cni_error(TRY_AGAIN_LATER, in, in_len, "node service at ", path,
                         " stopped before answering", RETRY_DETAILS);
    if (length) {
        answer[head_end + length] = '\n';
        write_all(1, answer + head_end, length + 1);
    }
    return code;
}
