// `datasync drill`: rehearses a recovery scenario on a scratch copy and measures it. Nothing the
// live server holds is changed: a scratch datasync-server (fresh index, same storage, read only
// except a scratch prefix) and a scratch agent are started beside the CLI and stopped after.
#pragma once

#include <string>

#include "http/http_client.h"

namespace ds {

struct DrillOptions {
  std::string server;            // live server URL
  std::string token;             // live admin token
  http::ClientOptions trust;     // how the live server is verified (cli::ServerTrust)
  std::string bin_dir;           // where datasync-server and datasync-agent are
  std::string storage_key_file;  // for object storage (passed to the scratch server)
  int down_seconds = 20;         // server-down: how long the server stays away
  bool keep = false;             // keep the scratch directory
  bool json = false;
};

// Each returns the process exit status: 0 when the drill met its objective (RPO 0 / drift 0).
int DrillIndexLoss(const DrillOptions& options);
int DrillServerDown(const DrillOptions& options);

}  // namespace ds
