// Merged into @jupyterlab/builder's webpack configuration (package.json: jupyterlab.webpackConfig).
//
// The builder exposes the extension's modules by absolute path, and webpack's deterministic
// id of the module-federation container entry is a hash of those paths, so two checkouts of
// the same commit would build different remoteEntry.*.js files. A fixed id for that one
// module makes the bundle depend only on the sources and package-lock.json, which lets
// scripts/test.sh compare the committed bundle with a fresh build.
class PathIndependentContainerEntryId {
  apply(compiler) {
    compiler.hooks.compilation.tap('PathIndependentContainerEntryId', compilation => {
      // Stage 10: after webpack's own id plugins (stage 0) have numbered every module.
      compilation.hooks.moduleIds.tap(
        { name: 'PathIndependentContainerEntryId', stage: 10 },
        modules => {
          for (const module of modules) {
            if (module.identifier().startsWith('container entry ')) {
              compilation.chunkGraph.setModuleId(module, 'container-entry');
            }
          }
        }
      );
    });
  }
}

module.exports = {
  plugins: [new PathIndependentContainerEntryId()]
};
