/** The network methods of the Kata agent's AgentService, as ttrpc methods (service "grpc.AgentService"). */
import { AgentService } from './generated/agent_pb.js';
import { unaryMethod } from './ttrpc/method.js';

export const AgentMethods = {
  updateInterface: unaryMethod(AgentService.method.updateInterface),
  updateRoutes: unaryMethod(AgentService.method.updateRoutes),
  listInterfaces: unaryMethod(AgentService.method.listInterfaces),
  listRoutes: unaryMethod(AgentService.method.listRoutes),
  addArpNeighbors: unaryMethod(AgentService.method.addARPNeighbors),
  getIpTables: unaryMethod(AgentService.method.getIPTables),
  setIpTables: unaryMethod(AgentService.method.setIPTables),
} as const;
