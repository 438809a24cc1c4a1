import pkg from "../package.json" with { type: "json" };

/** The Dragnet version, from package.json (bundled in at build time). */
export const VERSION: string = pkg.version;
