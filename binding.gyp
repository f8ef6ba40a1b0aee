{
  "targets": [
    {
      "target_name": "vcnet_native",
      "sources": ["native/vcnet_native.c"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
