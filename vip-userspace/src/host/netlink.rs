//! The addresses and routes vip reads and owns, through rtnetlink.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope, RouteType},
    AddressFamily,
};
use rtnetlink::{Handle, RouteMessageBuilder};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket: {0}")]
    Open(#[source] std::io::Error),
    #[error("netlink {what}: {source}")]
    Request {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("no loopback interface \"lo\" in this network namespace")]
    NoLoopback,
    #[error("route {cidr}: {message}")]
    InvalidRoute { cidr: IpNet, message: String },
    #[error("route {cidr}: its interface {dev:?} is not on this host now")]
    NoDev { cidr: IpNet, dev: String },
}

impl crate::errors::Blame for NetlinkError {
    fn is_user_error(&self) -> bool {
        false
    }
}

pub const TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;
/// `RT_TABLE_LOCAL`.
pub const TABLE_LOCAL: u32 = 255;

/// One address on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// One route, as much of it as vip compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub local: bool,
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// The output interface's index.
    pub oif: Option<u32>,
}

enum Change {
    Add,
    Delete,
}

pub struct Netlink {
    handle: Handle,
    lo: u32,
}

impl Netlink {
    /// Connects in the caller's network namespace; needs a tokio runtime.
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
        tokio::spawn(connection);
        let lo = nix::net::if_::if_nametoindex("lo").map_err(|_| NetlinkError::NoLoopback)?;
        Ok(Netlink { handle, lo })
    }

    pub fn loopback_index(&self) -> u32 {
        self.lo
    }

    pub async fn addresses(&self) -> Result<Vec<Address>, NetlinkError> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("dump addresses"))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                let addr = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = addr.or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                Some(Address {
                    ifindex: m.header.index,
                    addr,
                    prefix_len: m.header.prefix_len,
                })
            })
            .collect())
    }

    pub async fn routes(&self) -> Result<Vec<Route>, NetlinkError> {
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessageBuilder::<IpAddr>::new().build();
            query.header.address_family = family;
            let messages: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(request("dump routes"))?;
            routes.extend(messages.iter().filter_map(route_of));
        }
        Ok(routes)
    }

    /// `ip addr add NET dev lo label LABEL`.
    pub async fn add_alias(&self, net: Ipv4Net, label: &str) -> Result<(), NetlinkError> {
        let mut request =
            self.handle
                .address()
                .add(self.lo, IpAddr::V4(net.network()), net.prefix_len());
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Label(label.to_string()));
        request
            .execute()
            .await
            .map_err(request_err(format!("add {net} on lo")))
    }

    /// `ip addr del NET dev lo`.
    pub async fn del_alias(&self, net: Ipv4Net) -> Result<(), NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.index = self.lo;
        message.header.prefix_len = net.prefix_len();
        message
            .attributes
            .push(AddressAttribute::Local(IpAddr::V4(net.network())));
        // With the address too, the kernel matches the prefix length, so
        // the same address with another prefix (someone else's) stays.
        message
            .attributes
            .push(AddressAttribute::Address(IpAddr::V4(net.network())));
        self.handle
            .address()
            .del(message)
            .execute()
            .await
            .map_err(request_err(format!("delete {net} from lo")))
    }

    /// `ip route add local CIDR dev lo table local`.
    pub async fn add_local_route(&self, cidr: IpNet) -> Result<(), NetlinkError> {
        self.change_route(
            Change::Add,
            self.local_route(cidr)?,
            format!("local route {cidr}"),
        )
        .await
    }

    pub async fn del_local_route(&self, cidr: IpNet) -> Result<(), NetlinkError> {
        self.change_route(
            Change::Delete,
            self.local_route(cidr)?,
            format!("local route {cidr}"),
        )
        .await
    }

    /// `ip route add CIDR via VIA`.
    pub async fn add_route(
        &self,
        cidr: IpNet,
        via: IpAddr,
        dev: Option<&str>,
    ) -> Result<(), NetlinkError> {
        self.change_gateway_route(Change::Add, cidr, via, dev).await
    }

    pub async fn del_route(
        &self,
        cidr: IpNet,
        via: IpAddr,
        dev: Option<&str>,
    ) -> Result<(), NetlinkError> {
        self.change_gateway_route(Change::Delete, cidr, via, dev)
            .await
    }

    async fn change_gateway_route(
        &self,
        change: Change,
        cidr: IpNet,
        via: IpAddr,
        dev: Option<&str>,
    ) -> Result<(), NetlinkError> {
        let message = gateway_route(cidr, via, dev)?;
        self.change_route(change, message, format!("route {cidr} via {via}"))
            .await
    }

    async fn change_route(
        &self,
        change: Change,
        message: RouteMessage,
        what: String,
    ) -> Result<(), NetlinkError> {
        let routes = self.handle.route();
        let result = match change {
            Change::Add => routes.add(message).execute().await,
            Change::Delete => routes.del(message).execute().await,
        };
        let verb = match change {
            Change::Add => "add",
            Change::Delete => "delete",
        };
        result.map_err(request_err(format!("{verb} {what}")))
    }

    fn local_route(&self, cidr: IpNet) -> Result<RouteMessage, NetlinkError> {
        let mut message = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(cidr.network(), cidr.prefix_len())
            .map_err(invalid(cidr))?
            .output_interface(self.lo)
            .table_id(TABLE_LOCAL)
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .build();
        message.header.protocol = netlink_packet_route::route::RouteProtocol::Boot;
        Ok(message)
    }
}

fn gateway_route(
    cidr: IpNet,
    via: IpAddr,
    dev: Option<&str>,
) -> Result<RouteMessage, NetlinkError> {
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(cidr.network(), cidr.prefix_len())
        .map_err(invalid(cidr))?
        .gateway(via)
        .map_err(invalid(cidr))?
        .table_id(TABLE_MAIN);
    if let Some(dev) = dev {
        builder = builder.output_interface(interface_index(cidr, dev)?);
    }
    let mut message = builder.build();
    message.header.protocol = netlink_packet_route::route::RouteProtocol::Boot;
    Ok(message)
}

/// The index of a route's interface `dev`.
fn interface_index(cidr: IpNet, dev: &str) -> Result<u32, NetlinkError> {
    nix::net::if_::if_nametoindex(dev).map_err(|_| NetlinkError::NoDev {
        cidr,
        dev: dev.to_string(),
    })
}

/// rtnetlink does not export its route-builder error type; keep its message.
fn invalid<E: std::fmt::Display>(cidr: IpNet) -> impl Fn(E) -> NetlinkError {
    move |e| NetlinkError::InvalidRoute {
        cidr,
        message: e.to_string(),
    }
}

fn route_of(message: &RouteMessage) -> Option<Route> {
    let table = message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table));
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let dst = message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => ip(d),
        _ => None,
    });
    let dst = match (dst, message.header.address_family) {
        (Some(dst), _) => dst,
        (None, AddressFamily::Inet) => IpAddr::V4(0.into()),
        (None, AddressFamily::Inet6) => IpAddr::V6(0.into()),
        _ => return None,
    };
    let gateway = message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => ip(g),
        _ => None,
    });
    let oif = message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    });
    Some(Route {
        table,
        local: message.header.kind == RouteType::Local,
        dst: IpNet::new(dst, message.header.destination_prefix_length).ok()?,
        gateway,
        oif,
    })
}

fn request(what: &str) -> impl Fn(rtnetlink::Error) -> NetlinkError + '_ {
    move |source| NetlinkError::Request {
        what: what.to_string(),
        source,
    }
}

fn request_err(what: String) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    move |source| NetlinkError::Request { what, source }
}
