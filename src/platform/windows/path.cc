// Paths on Windows: UTF-16 natively, converted with CP_UTF8 only (never the ANSI code page, which
// fs::path(std::string) would use under MinGW); `\\?\` forms for the wide file APIs.
#include "platform/path.h"

#include <string>
#include <vector>

#include "platform/windows/internal.h"

namespace ds::platform {
namespace internal {

std::wstring Widen(std::string_view utf8) {
  if (utf8.empty()) return {};
  const int n =
      ::MultiByteToWideChar(CP_UTF8, 0, utf8.data(), static_cast<int>(utf8.size()), nullptr, 0);
  std::wstring out(static_cast<size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, utf8.data(), static_cast<int>(utf8.size()), out.data(), n);
  return out;
}

std::string Narrow(std::wstring_view wide) {
  if (wide.empty()) return {};
  const int n = ::WideCharToMultiByte(CP_UTF8, 0, wide.data(), static_cast<int>(wide.size()),
                                      nullptr, 0, nullptr, nullptr);
  std::string out(static_cast<size_t>(n), '\0');
  ::WideCharToMultiByte(CP_UTF8, 0, wide.data(), static_cast<int>(wide.size()), out.data(), n,
                        nullptr, nullptr);
  return out;
}

namespace {

bool IsSep(wchar_t c) { return c == L'\\' || c == L'/'; }

}  // namespace

std::wstring LongPathForm(const std::filesystem::path& path) {
  const std::wstring& s = path.native();
  // Already verbatim (\\?\, \??\) or a device path (\\.\): the caller meant it as it is.
  if (s.size() >= 4 && IsSep(s[0]) && (IsSep(s[1]) || s[1] == L'?') &&
      (s[2] == L'?' || s[2] == L'.') && IsSep(s[3])) {
    return s;
  }
  const bool drive_absolute = s.size() >= 3 && s[1] == L':' && IsSep(s[2]) &&
                              ((s[0] >= L'A' && s[0] <= L'Z') || (s[0] >= L'a' && s[0] <= L'z'));
  const bool unc = s.size() >= 3 && IsSep(s[0]) && IsSep(s[1]) && !IsSep(s[2]);
  if (!drive_absolute && !unc) return s;
  // `\\?\` turns off Win32's own normalisation: do it here ('/' → '\', "." and ".." dropped).
  if (drive_absolute) return L"\\\\?\\" + path.lexically_normal().make_preferred().native();
  // UNC: libstdc++'s lexically_normal folds the leading "\\" into one, so only the part after
  // \\server\share is normalised (as a rooted path: ".." stops at the share, as in Win32).
  const size_t server_end = s.find_first_of(L"\\/", 2);
  const size_t share_end = server_end == std::wstring::npos
                               ? std::wstring::npos
                               : s.find_first_of(L"\\/", server_end + 1);
  std::wstring out = L"\\\\?\\UNC\\" + s.substr(2, share_end - 2);
  for (wchar_t& c : out) c = c == L'/' ? L'\\' : c;
  if (share_end != std::wstring::npos) {
    out += std::filesystem::path(s.substr(share_end)).lexically_normal().make_preferred().native();
  }
  return out;
}

}  // namespace internal

std::filesystem::path PathFromUtf8(std::string_view utf8) {
  return std::filesystem::path(internal::Widen(utf8));
}

std::string PathToUtf8(const std::filesystem::path& path) {
  return internal::Narrow(path.native());
}

absl::StatusOr<std::filesystem::path> RealPath(const std::filesystem::path& path) {
  const std::string display = PathToUtf8(path);
  std::wstring absolute(MAX_PATH + 1, L'\0');
  for (;;) {
    const DWORD n = ::GetFullPathNameW(path.c_str(), static_cast<DWORD>(absolute.size()),
                                       absolute.data(), nullptr);
    if (n == 0) return internal::LastError("resolve", display);
    if (n < absolute.size()) {
      absolute.resize(n);
      break;
    }
    absolute.resize(n);  // n: the size needed, with the terminator
  }
  // No access rights needed to name the object; BACKUP_SEMANTICS opens directories too. Links
  // (reparse points) are followed: the handle is the final object.
  HANDLE h = ::CreateFileW(internal::LongPathForm(absolute).c_str(), FILE_READ_ATTRIBUTES,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                           OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, nullptr);
  if (h == INVALID_HANDLE_VALUE) return internal::LastError("resolve", display);
  // The longest path Windows has (32767 units): Wine answers a short buffer with ERROR_MORE_DATA
  // instead of the size needed.
  std::vector<wchar_t> buffer(32768);
  DWORD n = 0;
  for (;;) {
    n = ::GetFinalPathNameByHandleW(h, buffer.data(), static_cast<DWORD>(buffer.size()),
                                    FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
    if (n == 0 || n < buffer.size()) break;
    buffer.resize(n + 1);  // n: the size needed, with the terminator
  }
  absl::Status error;
  if (n == 0) error = internal::LastError("resolve", display);
  ::CloseHandle(h);
  if (!error.ok()) return error;
  std::wstring out(buffer.data(), n);
  // The result is verbatim (\\?\C:\..., \\?\UNC\server\share\...): back to the usual form.
  if (out.rfind(L"\\\\?\\UNC\\", 0) == 0) {
    out = L"\\\\" + out.substr(8);
  } else if (out.rfind(L"\\\\?\\", 0) == 0 && out.size() >= 6 && out[5] == L':') {
    out = out.substr(4);
  }
  return std::filesystem::path(out);
}

}  // namespace ds::platform
