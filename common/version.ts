import pkg from "../package.json" with { type: "json" };

/** Set by scripts/build.mjs for the agent executable when DRAGNET_AGENT_VERSION asks for another version. */
declare const __DRAGNET_VERSION__: string | undefined;

/** The Dragnet version, from package.json (bundled in at build time), unless the build named another. */
export const VERSION: string =
  typeof __DRAGNET_VERSION__ === "string" && __DRAGNET_VERSION__ !== "" ? __DRAGNET_VERSION__ : pkg.version;
