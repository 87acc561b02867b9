/* The front of dist/jalien-bin in "launcher" mode (packaging/README.md says why).
 *
 *   dist/jalien-bin = this program | zlib stream of the Nuitka standalone folder | trailer
 *
 * written by build/pack_onefile.py. At a start, the folder is looked for in the unpack cache
 * of the user ($JALIEN_UNPACK_DIR, else $XDG_CACHE_HOME/jalien, else ~/.cache/jalien; if that
 * cannot be made, ${TMPDIR:-/tmp}/jalien-<uid>) under the build id of the trailer
 * ("<version>-<digest of everything inside>"):
 *  - there: execv() its jalien-bin. No checksum, no read of the payload, no child process:
 *    signals and exit codes are the program's own.
 *  - missing: unpack into a private temporary folder beside it, check the payload's CRC,
 *    fsync, then rename() the folder into place. Concurrent first starts (a worker node's
 *    job slots after a release) never run a half-written tree: the rename is atomic and a
 *    loser deletes its copy. (Nuitka's cached onefile rewrites files in place, which crashed
 *    concurrent first starts with SIGBUS and ETXTBSY here.)
 * Nothing is ever written next to the binary, so it runs from read-only CVMFS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the trailer is little-endian (build/pack_onefile.py)"
#endif

#define MAGIC "JALIENPK"
#define BUILD_ID_SIZE 32
#define CHUNK (256 * 1024)
#define EXIT_LAUNCHER 127

struct trailer {
    char magic[8];
    uint64_t payload_offset;
    uint64_t payload_size;
    uint32_t payload_crc32;
    uint32_t reserved;
    char build_id[BUILD_ID_SIZE];
};
_Static_assert(sizeof(struct trailer) == 64, "trailer layout");

enum { REC_END = 0, REC_DIR = 1, REC_FILE = 2, REC_SYMLINK = 3 };

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("jalien-bin: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_LAUNCHER);
}

/* ---- the payload: a zlib stream read with pread, records read from its output ---- */

struct reader {
    int fd;
    uint64_t offset, left;
    uint32_t crc;
    z_stream z;
    int ended;
    unsigned char in[CHUNK], out[CHUNK];
    size_t out_pos, out_len;
};

static int reader_fill(struct reader *r) {
    r->out_pos = r->out_len = 0;
    while (r->out_len == 0) {
        if (r->ended)
            return 0;
        if (r->z.avail_in == 0 && r->left > 0) {
            size_t want = r->left < CHUNK ? (size_t)r->left : CHUNK;
            ssize_t got = pread(r->fd, r->in, want, (off_t)r->offset);
            if (got <= 0)
                return -1;
            r->crc = (uint32_t)crc32(r->crc, r->in, (uInt)got);
            r->offset += (uint64_t)got;
            r->left -= (uint64_t)got;
            r->z.next_in = r->in;
            r->z.avail_in = (uInt)got;
        }
        r->z.next_out = r->out;
        r->z.avail_out = CHUNK;
        int rc = inflate(&r->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
            r->ended = 1;
        else if (rc != Z_OK && !(rc == Z_BUF_ERROR && r->left > 0))
            return -1;
        r->out_len = CHUNK - r->z.avail_out;
        if (r->out_len == 0 && r->left == 0 && r->z.avail_in == 0 && !r->ended)
            return -1;
    }
    return 1;
}

/* Copies n bytes of the stream into buf, or into fd when buf is NULL. */
static int reader_take(struct reader *r, void *buf, uint64_t n, int fd) {
    while (n > 0) {
        if (r->out_pos == r->out_len && reader_fill(r) <= 0)
            return -1;
        size_t have = r->out_len - r->out_pos;
        size_t use = n < have ? (size_t)n : have;
        if (buf != NULL) {
            memcpy(buf, r->out + r->out_pos, use);
            buf = (char *)buf + use;
        } else {
            for (size_t done = 0; done < use;) {
                ssize_t w = write(fd, r->out + r->out_pos + done, use - done);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return -1;
                done += (size_t)w;
            }
        }
        r->out_pos += use;
        n -= use;
    }
    return 0;
}

static int safe_relative(const char *path) {
    if (path[0] == '\0' || path[0] == '/')
        return 0;
    for (const char *p = path; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 2 && p[0] == '.' && p[1] == '.') || (len == 1 && p[0] == '.'))
            return 0;
        p += len + (slash ? 1 : 0);
    }
    return 1;
}

static const char *unpack(int fd, const struct trailer *t, const char *dir) {
    static struct reader r;
    memset(&r, 0, sizeof(r));
    r.fd = fd;
    r.offset = t->payload_offset;
    r.left = t->payload_size;
    r.crc = (uint32_t)crc32(0L, Z_NULL, 0);
    if (inflateInit(&r.z) != Z_OK)
        return "inflateInit failed";
    char path[PATH_MAX], target[PATH_MAX], name[PATH_MAX];
    const char *problem = NULL;
    for (;;) {
        unsigned char kind;
        uint16_t name_len;
        uint32_t mode;
        uint64_t size;
        if (reader_take(&r, &kind, 1, -1) < 0) {
            problem = "truncated payload";
            break;
        }
        if (kind == REC_END)
            break;
        if (reader_take(&r, &name_len, 2, -1) < 0 || name_len >= sizeof(name) ||
            reader_take(&r, name, name_len, -1) < 0 || reader_take(&r, &mode, 4, -1) < 0 ||
            reader_take(&r, &size, 8, -1) < 0) {
            problem = "truncated payload";
            break;
        }
        name[name_len] = '\0';
        if (!safe_relative(name) ||
            snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
            problem = "bad path in payload";
            break;
        }
        if (kind == REC_DIR) {
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                problem = strerror(errno);
                break;
            }
        } else if (kind == REC_SYMLINK) {
            if (size >= sizeof(target) || reader_take(&r, target, size, -1) < 0) {
                problem = "truncated payload";
                break;
            }
            target[size] = '\0';
            if (symlink(target, path) != 0) {
                problem = strerror(errno);
                break;
            }
        } else if (kind == REC_FILE) {
            int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)(mode & 0755));
            if (out < 0) {
                problem = strerror(errno);
                break;
            }
            int bad = reader_take(&r, NULL, size, out) < 0 || fsync(out) != 0;
            if (close(out) != 0 || bad) {
                problem = "could not write an unpacked file";
                break;
            }
        } else {
            problem = "unknown record in payload";
            break;
        }
    }
    if (problem == NULL) {
        while (!r.ended && reader_fill(&r) > 0) /* the end of the zlib stream */
            ;
        if (!r.ended || r.left != 0)
            problem = "truncated payload";
        else if (r.crc != t->payload_crc32)
            problem = "payload checksum mismatch (a damaged copy of jalien-bin?)";
    }
    inflateEnd(&r.z);
    return problem;
}

/* ---- the cache folder ---- */

static int mkdir_p(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return (mkdir(path, 0700) == 0 || errno == EEXIST) ? 0 : -1;
}

/* The folder is ours and nobody else may write into it (a /tmp fallback could be planted). */
static int private_dir(char *path) {
    struct stat st;
    if (mkdir_p(path) != 0 || lstat(path, &st) != 0)
        return 0;
    return S_ISDIR(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 022) == 0;
}

static void cache_root(char *out, size_t n) {
    const char *dir = getenv("JALIEN_UNPACK_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (dir != NULL && dir[0] == '/') {
        snprintf(out, n, "%s", dir);
    } else if (xdg != NULL && xdg[0] == '/') {
        snprintf(out, n, "%s/jalien", xdg);
    } else {
        if (home == NULL || home[0] != '/') {
            struct passwd *pw = getpwuid(geteuid());
            home = pw != NULL ? pw->pw_dir : NULL;
        }
        if (home != NULL && home[0] == '/')
            snprintf(out, n, "%s/.cache/jalien", home);
        else
            out[0] = '\0';
    }
    if (out[0] != '\0' && private_dir(out))
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(out, n, "%s/jalien-%lu", (tmp != NULL && tmp[0] == '/') ? tmp : "/tmp",
             (unsigned long)geteuid());
    if (!private_dir(out))
        die("no private folder to unpack into (tried the cache dir and %s); "
            "set JALIEN_UNPACK_DIR",
            out);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int valid_build_id(const char *id) {
    if (id[0] == '\0' || id[0] == '.')
        return 0;
    for (const char *p = id; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_' || *p == '+'))
            return 0;
    return 1;
}

int main(int argc, char **argv) {
    (void)argc;
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0)
        die("cannot find my own file (/proc/self/exe): %s", strerror(errno));
    self[len] = '\0';
    int fd = open(self, O_RDONLY | O_CLOEXEC);
    struct stat st;
    struct trailer t;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(t) ||
        pread(fd, &t, sizeof(t), st.st_size - (off_t)sizeof(t)) != (ssize_t)sizeof(t) ||
        memcmp(t.magic, MAGIC, 8) != 0)
        die("%s carries no payload (build it with packaging/build_binary.sh)", self);
    t.build_id[BUILD_ID_SIZE - 1] = '\0';
    if (!valid_build_id(t.build_id) || t.payload_offset + t.payload_size > (uint64_t)st.st_size)
        die("%s: damaged trailer", self);

    char root[PATH_MAX], entry[PATH_MAX], exe[PATH_MAX], tmp[PATH_MAX];
    cache_root(root, sizeof(root));
    if (snprintf(entry, sizeof(entry), "%s/%s", root, t.build_id) >= (int)sizeof(entry) ||
        snprintf(exe, sizeof(exe), "%s/jalien-bin", entry) >= (int)sizeof(exe) ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", root, t.build_id) >= (int)sizeof(tmp))
        die("unpack path too long: %s", root);

    execv(exe, argv); /* the usual case: unpacked before */
    if (errno != ENOENT)
        die("cannot run %s: %s", exe, strerror(errno));

    if (mkdtemp(tmp) == NULL)
        die("cannot create a folder in %s: %s", root, strerror(errno));
    const char *problem = unpack(fd, &t, tmp);
    if (problem != NULL) {
        nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        die("cannot unpack into %s: %s", root, problem);
    }
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if (rename(tmp, entry) != 0) {
        int err = errno;
        nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (err != EEXIST && err != ENOTEMPTY) /* else another start put it there first */
            die("cannot move the unpacked folder to %s: %s", entry, strerror(err));
    }
    close(fd);
    execv(exe, argv);
    die("cannot run %s: %s", exe, strerror(errno));
}
