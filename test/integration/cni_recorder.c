// wp-cni-recorder: a CNI plugin for tests, chained after bridge. It records
// every call and passes the previous result through unchanged.
//
// Config keys of its own: "logDir" (required). Each call appends one line to
// LOGDIR/calls.log:
//   COMMAND|CNI_CONTAINERID|CNI_IFNAME|CNI_NETNS|CNI_ARGS|<the config, one line>
// ADD prints the config's prevResult (the chain's result so far). When the
// file LOGDIR/kill-parent exists at an ADD, the plugin removes it and kills
// its parent (the CNI runtime: warmpoold) with SIGKILL first: a crash after
// bridge's ADD allocated the IP and before the runtime recorded the result.

#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char config[1 << 20];

// The JSON value starting at `p` (an object or a string), its length.
static size_t value_length(const char* p) {
  if (*p == '"') {
    const char* q = p + 1;
    while (*q && *q != '"') q += (*q == '\\' && q[1]) ? 2 : 1;
    return *q ? (size_t)(q - p + 1) : 0;
  }
  if (*p != '{') return 0;
  int depth = 0, in_string = 0;
  for (const char* q = p; *q; ++q) {
    if (in_string) {
      if (*q == '\\' && q[1]) ++q;
      else if (*q == '"') in_string = 0;
      continue;
    }
    if (*q == '"') in_string = 1;
    else if (*q == '{') ++depth;
    else if (*q == '}' && --depth == 0) return (size_t)(q - p + 1);
  }
  return 0;
}

// The value of top-level-ish key `key` (first occurrence), or NULL.
static const char* find_value(const char* key, size_t* len) {
  char pattern[64];
  snprintf(pattern, sizeof(pattern), "\"%s\":", key);
  const char* p = strstr(config, pattern);
  if (!p) return NULL;
  p += strlen(pattern);
  while (*p == ' ') ++p;
  *len = value_length(p);
  return *len ? p : NULL;
}

static const char* env(const char* name) {
  const char* v = getenv(name);
  return v ? v : "";
}

int main(void) {
  const char* command = env("CNI_COMMAND");
  if (strcmp(command, "VERSION") == 0) {
    printf("{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}\n");
    return 0;
  }
  size_t n = fread(config, 1, sizeof(config) - 1, stdin);
  config[n] = 0;
  while (n > 0 && (config[n - 1] == '\n' || config[n - 1] == '\r')) config[--n] = 0;

  size_t dir_len = 0;
  const char* dir = find_value("logDir", &dir_len);
  if (!dir || dir_len < 3) {
    printf("{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"logDir missing\"}\n");
    return 1;
  }
  char path[4096];
  snprintf(path, sizeof(path), "%.*s/calls.log", (int)(dir_len - 2), dir + 1);
  char* line = NULL;
  int len = asprintf(&line, "%s|%s|%s|%s|%s|%s\n", command, env("CNI_CONTAINERID"),
                     env("CNI_IFNAME"), env("CNI_NETNS"), env("CNI_ARGS"), config);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || len < 0 || write(fd, line, len) != len) {
    printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"cannot write %s\"}\n", path);
    return 1;
  }
  fsync(fd);
  close(fd);

  if (strcmp(command, "ADD") == 0) {
    snprintf(path, sizeof(path), "%.*s/kill-parent", (int)(dir_len - 2), dir + 1);
    if (unlink(path) == 0) {
      kill(getppid(), SIGKILL);
      return 1;
    }
    size_t prev_len = 0;
    const char* prev = find_value("prevResult", &prev_len);
    if (!prev) {
      printf("{\"cniVersion\":\"1.0.0\",\"code\":4,\"msg\":\"no prevResult to pass on\"}\n");
      return 1;
    }
    printf("%.*s\n", (int)prev_len, prev);
  }
  return 0;
}
