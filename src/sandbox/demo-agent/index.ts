export { DemoAgent, type DemoAgentEvent, type DemoAgentEvents, type DemoAgentOptions, type DemoEventType } from './agent';
