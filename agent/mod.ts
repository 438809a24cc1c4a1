// The agent's public face, for its executable and for tests.
export { Agent, type AgentOptions } from "./agent.js";
export { CommandRunner, MAX_COMMAND_BYTES } from "./command-runner.js";
export { type AgentConfig, type AgentFlags, loadAgentConfig } from "./config.js";
export { agentModules } from "./modules/modules.gen.js";
export { type AgentModule, defineModule, ModuleRegistry, type SomeModule } from "./modules/registry.js";
export { ReplayGuard } from "./replay-guard.js";
