// JS9 preferences for SkySift: static files only, no helper process, no proxy.
var JS9Prefs = {
  globalOpts: {
    helperType: "none",
    loadProxy: false,
    installDir: "/static/vendor/js9/",
    workDir: "",
    debug: 0,
  },
  imageOpts: { colormap: "grey", scale: "linear", scaleclipping: "zscale" },
};
